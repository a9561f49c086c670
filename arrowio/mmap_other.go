//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package arrowio

import (
	"fmt"
	"os"
)

// mapFile reads the file into memory on platforms without syscall.Mmap.
func mapFile(f *os.File, size int64) ([]byte, func(), error) {
	if size < 0 || size > int64(maxInt) {
		return nil, nil, fmt.Errorf("file size %d is not addressable", size)
	}
	return readAll(f, size)
}
