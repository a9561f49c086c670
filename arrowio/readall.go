package arrowio

import (
	"fmt"
	"io"
	"os"

	"github.com/strata-ml/strata/internal/inputfile"
)

// openInput opens the input file path for reading through
// inputfile.Open, the one opener of every input strata reads: it returns
// the open regular file and its size; the caller closes f. A directory, a
// device, a pipe or a socket is refused as bad input (inputerr.ErrInput)
// before anything is read. data is always nil: it was the whole content
// of a pipe, which is no longer read.
func openInput(path string) (f *os.File, size int64, data []byte, err error) {
	f, size, err = inputfile.Open(path)
	return f, size, nil, err
}

// readAll reads exactly size bytes from the start of f.
func readAll(f *os.File, size int64) ([]byte, func(), error) {
	data := make([]byte, size)
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, size), data); err != nil {
		return nil, nil, err
	}
	return data, func() {}, nil
}

// readInput reads the input file at path whole, opened by openInput: its
// size bounds what is read.
func readInput(path string) ([]byte, error) {
	f, size, _, err := openInput(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, _, err := readAll(f, size)
	if err != nil {
		return nil, fmt.Errorf("arrowio: read %s: %w", path, err)
	}
	return data, nil
}
