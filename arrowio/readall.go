package arrowio

import (
	"fmt"
	"io"
	"os"
)

// openInput opens path for reading. For a regular file it returns the open
// file and its size, and data is nil; the caller closes f. For a pipe or
// device, whose size is unknown until read, it reads everything, closes
// the file and returns the bytes with f nil.
func openInput(path string) (f *os.File, size int64, data []byte, err error) {
	f, err = os.Open(path)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("arrowio: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, fmt.Errorf("arrowio: %w", err)
	}
	if st.Mode().IsRegular() {
		return f, st.Size(), nil, nil
	}
	defer f.Close()
	data, err = io.ReadAll(f)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("arrowio: read %s: %w", path, err)
	}
	return nil, int64(len(data)), data, nil
}

// readAll reads exactly size bytes from the start of f.
func readAll(f *os.File, size int64) ([]byte, func(), error) {
	data := make([]byte, size)
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, size), data); err != nil {
		return nil, nil, err
	}
	return data, func() {}, nil
}
