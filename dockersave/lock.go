package dockersave

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// fileLock is an exclusive flock(2) on a lock file. flock locks belong to the
// open file description, so two opens in one process exclude each other just
// like two processes do.
type fileLock struct {
	fd   int
	path string
}

// lockFile takes an exclusive lock on path, creating it if needed. It waits
// for the holder to release it, or until ctx is done. onWait, if set, is
// called once before waiting (tests use it to observe contention).
func lockFile(ctx context.Context, path string, onWait func(string)) (*fileLock, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	err = flock(fd, unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		return &fileLock{fd: fd, path: path}, nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		unix.Close(fd)
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if onWait != nil {
		onWait(path)
	}
	done := make(chan error, 1)
	go func() { done <- flock(fd, unix.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		return &fileLock{fd: fd, path: path}, nil
	case <-ctx.Done():
		// The waiting goroutine still owns fd: closing it when the lock
		// finally comes (or fails) releases it.
		go func() {
			<-done
			unix.Close(fd)
		}()
		return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
	}
}

func flock(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if err != unix.EINTR {
			return err
		}
	}
}

// unlock releases the lock; closing the descriptor drops the flock.
func (l *fileLock) unlock() error {
	if err := unix.Close(l.fd); err != nil {
		return fmt.Errorf("unlock %s: %w", l.path, err)
	}
	return nil
}
