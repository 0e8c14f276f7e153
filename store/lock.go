package store

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// fileLock is a flock(2) on a lock file, exclusive or shared. flock locks
// belong to the open file description, so two opens in one process exclude
// each other just like two processes do.
//
// Lock files may be removed (Prune removes those of evicted images while it
// holds them exclusively), so every acquisition checks that the file it
// locked is still the one at its path and starts over if not: a lock on an
// unlinked file would exclude nobody.
type fileLock struct {
	fd   int
	path string
}

// lockFile takes a lock on path (how is unix.LOCK_EX or unix.LOCK_SH),
// creating the file if needed. It waits for conflicting holders to release
// it, or until ctx is done. onWait, if set, is called once before the first
// wait (tests use it to observe contention).
func lockFile(ctx context.Context, path string, how int, onWait func(string)) (*fileLock, error) {
	waited := false
	for {
		l, ok, err := tryLockFile(path, how)
		if err != nil {
			return nil, err
		}
		if ok {
			return l, nil
		}
		if !waited && onWait != nil {
			onWait(path)
		}
		waited = true
		l, err = waitLock(ctx, path, how)
		if err != nil {
			return nil, err
		}
		if l != nil {
			return l, nil
		}
		// The file was replaced while we waited: try the new one.
	}
}

// tryLockFile takes the lock without waiting. ok is false when another open
// file description holds a conflicting lock.
func tryLockFile(path string, how int) (l *fileLock, ok bool, err error) {
	for {
		fd, err := openLock(path)
		if err != nil {
			return nil, false, err
		}
		err = flock(fd, how|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			unix.Close(fd)
			return nil, false, nil
		}
		if err != nil {
			unix.Close(fd)
			return nil, false, fmt.Errorf("lock %s: %w", path, err)
		}
		same, err := stillAt(fd, path)
		if err != nil {
			unix.Close(fd)
			return nil, false, err
		}
		if same {
			return &fileLock{fd: fd, path: path}, true, nil
		}
		unix.Close(fd)
	}
}

// tryLockExisting is tryLockFile for a lock file someone else created: it
// never creates path (a lock on a file it created would prove nothing), and
// opens it read-only (flock needs no more), so it works on a read-only
// store. exists is false when there is no file at path; ok is false when
// another open file description holds a conflicting lock, or the file was
// replaced meanwhile (its new owner is alive).
func tryLockExisting(path string, how int) (l *fileLock, ok, exists bool, err error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, false, false, nil
	}
	if err != nil {
		return nil, false, true, fmt.Errorf("open lock %s: %w", path, err)
	}
	err = flock(fd, how|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		unix.Close(fd)
		return nil, false, true, nil
	}
	if err != nil {
		unix.Close(fd)
		return nil, false, true, fmt.Errorf("lock %s: %w", path, err)
	}
	same, err := stillAt(fd, path)
	if err != nil || !same {
		unix.Close(fd)
		return nil, false, true, err
	}
	return &fileLock{fd: fd, path: path}, true, true, nil
}

// waitLock blocks in flock until the lock is granted or ctx ends. It returns
// a nil lock and no error when the file it got was unlinked meanwhile.
func waitLock(ctx context.Context, path string, how int) (*fileLock, error) {
	fd, err := openLock(path)
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- flock(fd, how) }()
	select {
	case err := <-done:
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		same, err := stillAt(fd, path)
		if err != nil || !same {
			unix.Close(fd)
			return nil, err
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

func openLock(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return -1, fmt.Errorf("open lock %s: %w", path, err)
	}
	return fd, nil
}

// stillAt reports whether fd is the file at path (same device and inode).
func stillAt(fd int, path string) (bool, error) {
	var have, now unix.Stat_t
	if err := unix.Fstat(fd, &have); err != nil {
		return false, fmt.Errorf("lock %s: %w", path, err)
	}
	err := unix.Stat(path, &now)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", path, err)
	}
	return have.Dev == now.Dev && have.Ino == now.Ino, nil
}

func flock(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if err != unix.EINTR {
			return err
		}
	}
}

// unlock releases the lock; closing the descriptor drops the flock. Calls
// after the first do nothing (one goroutine owns a fileLock).
func (l *fileLock) unlock() error {
	if l.fd < 0 {
		return nil
	}
	err := unix.Close(l.fd)
	l.fd = -1
	if err != nil {
		return fmt.Errorf("unlock %s: %w", l.path, err)
	}
	return nil
}

// removeAndUnlock deletes the lock file, then releases it. Only a holder of
// the exclusive lock may call it: waiters then find the path gone or
// replaced and lock the new file.
func (l *fileLock) removeAndUnlock() error {
	err := unix.Unlink(l.path)
	if errors.Is(err, unix.ENOENT) {
		err = nil
	}
	if uerr := l.unlock(); err == nil {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("remove lock %s: %w", l.path, err)
	}
	return nil
}
