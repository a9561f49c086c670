package testmodels

import (
	"fmt"
	"os"
	"syscall"
)

// lock takes an exclusive flock on path (created if missing), waiting for
// other processes that hold it; the returned func releases it. The kernel
// releases it too when the process dies, so a crashed build blocks no one.
func lock(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
