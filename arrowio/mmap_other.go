//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package arrowio

import (
	"fmt"
	"os"
)

// fileMap is the bytes of a file, read into Go memory on platforms without
// syscall.Mmap.
type fileMap struct {
	data   []byte
	mapped bool // always false here
}

// openMap reads the first size bytes of f into memory.
func openMap(f *os.File, size int64) (*fileMap, error) {
	if size < 0 || size > int64(maxInt) {
		return nil, fmt.Errorf("file size %d is not addressable", size)
	}
	data, _, err := readAll(f, size)
	if err != nil {
		return nil, err
	}
	return &fileMap{data: data}, nil
}

// close forgets the bytes.
func (fm *fileMap) close() error {
	fm.data = nil
	return nil
}

// readOnly is a no-op: Go memory cannot be write-protected.
func (fm *fileMap) readOnly() error { return nil }

// mapFile reads the file into memory on platforms without syscall.Mmap.
func mapFile(f *os.File, size int64) ([]byte, func(), error) {
	fm, err := openMap(f, size)
	if err != nil {
		return nil, nil, err
	}
	return fm.data, func() {}, nil
}
