package harness

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// process is a child process in a process group of its own. It is stopped
// (stopSignal to the group, then SIGKILL after grace) by stop or when the
// context it was started with ends, and killed by the kernel if the harness
// process dies first (Pdeathsig).
type process struct {
	name       string
	cmd        *exec.Cmd
	stopSignal syscall.Signal
	grace      time.Duration

	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed

	stopOnce sync.Once
}

// startProcess starts cmd in its own process group. cmd.SysProcAttr may
// carry credentials; Setpgid and Pdeathsig are set here.
func startProcess(ctx context.Context, name string, cmd *exec.Cmd, stopSignal syscall.Signal, grace time.Duration) (*process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	p := &process{name: name, cmd: cmd, stopSignal: stopSignal, grace: grace, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that forked the child exits, not
		// the process: lock this goroutine to its thread and keep it (and
		// so the thread) alive until the child has exited.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		select {
		case <-ctx.Done():
			p.stop()
		case <-p.done:
		}
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// stop signals the process group, waits up to grace for the process to
// exit, then kills the group; once the leader is gone it kills what is
// left of the group (a child that ignored the signal). It is safe to call
// more than once and from several goroutines; every call returns after the
// process has exited.
func (p *process) stop() {
	p.stopOnce.Do(func() {
		pgid := p.cmd.Process.Pid
		// Whatever happens, leave no member of the group behind. (The group
		// id stays reserved while any member lives, so this cannot hit an
		// unrelated process unless the id is reused in between, after every
		// member has gone.)
		defer func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) }()
		select {
		case <-p.done:
			return
		default:
		}
		if err := syscall.Kill(-pgid, p.stopSignal); err != nil && !errors.Is(err, syscall.ESRCH) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
		t := time.NewTimer(p.grace)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
	})
	<-p.done
}
