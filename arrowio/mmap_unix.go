//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package arrowio

import (
	"fmt"
	"os"
	"syscall"
)

// mapFile maps the first size bytes of f copy-on-write: the Arrow reader may
// byte-swap a big-endian file in place, which must neither fault nor change
// the file. The returned function unmaps. If mapping fails (some special
// file systems), the file is read into memory instead.
func mapFile(f *os.File, size int64) ([]byte, func(), error) {
	if size == 0 {
		return nil, func() {}, nil
	}
	if size < 0 || size > int64(maxInt) {
		return nil, nil, fmt.Errorf("file size %d is not addressable", size)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE)
	if err != nil {
		return readAll(f, size)
	}
	return data, func() { _ = syscall.Munmap(data) }, nil
}
