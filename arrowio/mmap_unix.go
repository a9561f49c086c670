//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package arrowio

import (
	"fmt"
	"os"
	"syscall"
)

// fileMap is the bytes of a file: a memory mapping, or Go memory where the
// file could not be mapped.
type fileMap struct {
	data   []byte
	mapped bool // data is a mapping that close unmaps
}

// openMap maps the first size bytes of f copy-on-write: the Arrow reader
// may byte-swap a big-endian file in place, which must neither fault nor
// change the file. If mapping fails (some special file systems), the file
// is read into memory instead. The mapping outlives f; close releases it.
func openMap(f *os.File, size int64) (*fileMap, error) {
	if size == 0 {
		return &fileMap{}, nil
	}
	if size < 0 || size > int64(maxInt) {
		return nil, fmt.Errorf("file size %d is not addressable", size)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE)
	if err != nil {
		data, _, err := readAll(f, size)
		if err != nil {
			return nil, err
		}
		return &fileMap{data: data}, nil
	}
	return &fileMap{data: data, mapped: true}, nil
}

// close unmaps a mapping (a no-op for Go memory) and forgets the bytes.
// No slice of fm.data may be used afterwards.
func (fm *fileMap) close() error {
	data, mapped := fm.data, fm.mapped
	fm.data, fm.mapped = nil, false
	if mapped && len(data) > 0 {
		return syscall.Munmap(data)
	}
	return nil
}

// mapFile maps the first size bytes of f as openMap does; the returned
// function unmaps.
func mapFile(f *os.File, size int64) ([]byte, func(), error) {
	fm, err := openMap(f, size)
	if err != nil {
		return nil, nil, err
	}
	return fm.data, func() { _ = fm.close() }, nil
}
