// Package dirlock gives a run exclusive use of a directory: an advisory
// lock (flock) on the file .strata.lock inside it, held through an open
// file, so that the kernel releases it when the process dies however it
// dies. strata's stages lock their output directory for the whole run
// (two runs into one directory would interleave their checkpoints and
// outputs), and the plugin locks each run's private directory, so that a
// directory whose lock is free belongs to no live process.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Name is the lock file's name inside a locked directory.
const Name = ".strata.lock"

// ErrLocked is wrapped by the error of Lock when another open lock
// (another process, or another run of this one) holds the directory.
var ErrLocked = errors.New("locked by another run")

// A Held is a held lock on a directory.
type Held struct {
	dir string
	f   *os.File
}

// Lock takes the lock of the existing directory dir without waiting: an
// error wrapping ErrLocked when it is held.
func Lock(dir string) (*Held, error) {
	path := filepath.Join(dir, Name)
	for range 100 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		if err := tryLock(f); err != nil {
			f.Close()
			if errors.Is(err, errWouldBlock) {
				return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
			}
			return nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		// A holder that unlocked removed the file after we opened it:
		// the lock we hold is on a file nobody else will open. Retry on
		// the file the path names now.
		held, err1 := f.Stat()
		now, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(held, now) {
			return &Held{dir: dir, f: f}, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("lock %s: the lock file keeps changing", dir)
}

// Moved tells l that its directory was renamed to dir (the open lock
// moves with it), for Unlock to remove the lock file there.
func (l *Held) Moved(dir string) { l.dir = dir }

// Unlock removes the lock file and releases the lock (removing first, so
// that no other run can lock the file being removed). It is idempotent.
func (l *Held) Unlock() {
	if l == nil || l.f == nil {
		return
	}
	_ = os.Remove(filepath.Join(l.dir, Name))
	_ = l.f.Close()
	l.f = nil
}

// Free reports whether dir's lock is free, taking and releasing it: a
// directory of a run whose process is gone. A directory without a lock
// file is free.
func Free(dir string) bool {
	l, err := Lock(dir)
	if err != nil {
		return false
	}
	l.Unlock()
	return true
}
