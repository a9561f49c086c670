// Package inputfile opens the files a user names as inputs, in one place
// for every reader of strata: only regular files (symlinks followed) are
// read, so that a device (/dev/zero, /dev/urandom), a named pipe, a socket
// or a directory is refused at once as bad input instead of read for ever
// or failing late; and a file read whole is bounded by a size of package
// limits. Every error is bad input (inputerr.ErrInput) naming the path:
// retrying cannot change what the path is.
package inputfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/limits"
)

// Open opens the regular file at path for reading and returns it with its
// size; the caller closes it. A path that does not exist or cannot be
// read, a directory, a device, a pipe or a socket is bad input. The file
// is opened without blocking (a named pipe with no writer would block
// open for ever) and its type checked on the open descriptor, so a path
// swapped between a check and the open cannot slip through.
func Open(path string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|openFlags, 0)
	if err != nil {
		return nil, 0, inputerr.Errorf("%w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, inputerr.Errorf("%s: %w", path, err)
	}
	if err := Regular(path, st.Mode()); err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// Regular returns nil when mode is a regular file's, else the bad-input
// error Open gives for path.
func Regular(path string, mode fs.FileMode) error {
	if mode.IsRegular() {
		return nil
	}
	if mode.IsDir() {
		return inputerr.Errorf("%s: is a directory, want a file", path)
	}
	return inputerr.Errorf("%s: is %s, not a regular file (strata reads inputs it can size and hash: copy it to a file)", path, describe(mode))
}

// describe names a non-regular file type.
func describe(mode fs.FileMode) string {
	switch {
	case mode&fs.ModeCharDevice != 0:
		return "a character device"
	case mode&fs.ModeDevice != 0:
		return "a block device"
	case mode&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case mode&fs.ModeSocket != 0:
		return "a socket"
	}
	return "a special file (" + mode.Type().String() + ")"
}

// ReadFile reads the regular file at path whole. A file of more than
// limit bytes is bad input naming what it is (e.g. "config file") and the
// limit, refused before it is read; a limit <= 0 bounds the read by the
// file's size alone.
func ReadFile(path string, limit int64, what string) ([]byte, error) {
	f, size, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if limit <= 0 {
		limit = size
	} else if size > limit {
		return nil, TooLarge(path, size, limit, what)
	}
	// The bound holds even if the file grows after Open.
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, TooLarge(path, int64(len(b)), limit, what)
	}
	return b, nil
}

// TooLarge is the bad-input error of a file of size bytes over a limit.
func TooLarge(path string, size, limit int64, what string) error {
	if what == "" {
		what = "file"
	}
	return inputerr.Errorf("%s: %s bytes is over the limit of %s for a %s (docs/FORMATS.md, Input limits)",
		path, limits.Count(size), limits.Size(limit), what)
}
