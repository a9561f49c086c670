package arrowio

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/strata-ml/strata/internal/inputerr"
)

// WriteFileAtomic writes a file so that it appears complete under path or not
// at all. It creates a temporary file in path's directory (so the final rename
// stays on one file system), calls write with a buffered writer over it,
// flushes, fsyncs and closes it, renames it to path, and fsyncs the
// directory. If write or any step fails, the temporary file is removed, path
// is left as it was (absent, or the previous complete version), and the first
// error is returned. A symlink at path is followed: the file it names is
// replaced, the link stays.
//
// A path that names an existing device or named pipe (/dev/stdout, a FIFO a
// reader waits on) is written in place instead: renaming over it would
// replace the device or pipe with a file nobody reads. What cannot succeed
// on any retry is bad input (inputerr.ErrInput): a directory at path, a
// missing directory or a file on the path to it, a socket. A failing write
// (a full disk, /dev/full) is not.
//
// The new file gets mode 0644 less the process umask, like os.Create. write
// must not retain w.
func WriteFileAtomic(path string, write func(w io.Writer) error) error {
	if err := CheckTarget(path); err != nil {
		return fmt.Errorf("arrowio: write %w", err)
	}
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return writeInPlace(path, write)
	}
	path = followLinks(path)
	dir := filepath.Dir(path)
	tmp, err := createTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("arrowio: write %s: %w", path, err)
	}
	tmpName := tmp.Name()
	closed, renamed := false, false
	defer func() {
		// Runs on errors and on a panic in write alike.
		if !closed {
			_ = tmp.Close()
		}
		if !renamed {
			_ = os.Remove(tmpName)
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	// onlyWriter hides *os.File's other methods, so that writers which close
	// an io.Closer sink (the Parquet writer does) cannot close the file early.
	if err := write(onlyWriter{bw}); err != nil {
		return fmt.Errorf("arrowio: write %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("arrowio: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("arrowio: write %s: fsync: %w", path, err)
	}
	closed = true
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("arrowio: write %s: %w", path, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("arrowio: write %s: %w", path, err)
	}
	renamed = true
	// The rename is done: from here on the target is complete, so a failing
	// directory sync is reported but the file stays.
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("arrowio: write %s: fsync directory: %w", path, err)
	}
	return nil
}

// followLinks returns the path a chain of symlinks at path leads to (the
// target may not exist yet), or path itself when it is no symlink.
func followLinks(path string) string {
	for range 40 {
		st, err := os.Lstat(path)
		if err != nil || st.Mode()&fs.ModeSymlink == 0 {
			return path
		}
		to, err := os.Readlink(path)
		if err != nil {
			return path
		}
		if !filepath.IsAbs(to) {
			to = filepath.Join(filepath.Dir(path), to)
		}
		path = to
	}
	return path
}

// CheckTarget returns the bad-input error (inputerr.ErrInput) of an
// output path WriteFileAtomic cannot write on any retry, before any work:
// a directory or a socket at path, a directory to hold it that is
// missing or is a file. The message starts with path.
func CheckTarget(path string) error {
	if st, err := os.Stat(path); err == nil {
		switch {
		case st.IsDir():
			return inputerr.Errorf("%s: is a directory, want a file", path)
		case st.Mode()&fs.ModeSocket != 0:
			return inputerr.Errorf("%s: is a socket, want a file, a device or a pipe", path)
		}
		return nil
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return inputerr.Errorf("%s: its directory %s does not exist", path, dir)
	case err == nil && !st.IsDir():
		return inputerr.Errorf("%s: %s is a file, not a directory", path, dir)
	}
	return nil
}

// writeInPlace writes to the existing device or named pipe at path,
// opened without creating or truncating anything. A pipe is opened
// without blocking, so that one nobody reads fails at once instead of
// hanging; writes to it still wait for the reader.
func writeInPlace(path string, write func(w io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|nonblock, 0)
	if err != nil {
		return fmt.Errorf("arrowio: write %s: %w", path, err)
	}
	bw := bufio.NewWriter(f)
	err = write(onlyWriter{bw})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("arrowio: write %s: %w", path, err)
	}
	return nil
}

// createTemp is os.CreateTemp with mode 0644 instead of 0600, so that the
// umask applies as it does for os.Create.
func createTemp(dir, prefix string) (*os.File, error) {
	var err error
	for range 100 {
		var rnd [8]byte
		if _, err = rand.Read(rnd[:]); err != nil {
			return nil, err
		}
		name := filepath.Join(dir, prefix+hex.EncodeToString(rnd[:]))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("could not create a unique temporary file in %s", dir)
}

type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// SyncDir fsyncs a directory so that a rename in it is durable: every
// writer of strata that renames a finished file or directory into place
// calls it. Windows cannot sync a directory handle and needs no such step;
// file systems that refuse (EINVAL on some network file systems) are not
// an error either.
func SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	return nil
}
