// Package provenance says where an output came from: the input files it
// was made from, identified by path and content hash, and the build of
// strata that made it. Every JSON output of strata records both.
package provenance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputfile"
)

// File identifies an input by path and content hash.
type File struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// HashFile returns the file at path with the hex SHA-256 of its content.
// The file must be a regular file (inputfile.Open: a device or a pipe
// would be read for ever); one that cannot be opened is bad input. The
// read stops with ctx's error when ctx is done.
func HashFile(ctx context.Context, path string) (File, error) {
	f, _, err := inputfile.Open(path)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return File{}, fmt.Errorf("hash %s: %w", path, err)
		}
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return File{}, fmt.Errorf("hash %s: %w", path, err)
		}
	}
	return File{Path: path, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Bytes returns the File of content b read from path.
func Bytes(path string, b []byte) File {
	h := sha256.Sum256(b)
	return File{Path: path, SHA256: hex.EncodeToString(h[:])}
}

// These are set at link time by the Makefile:
//
//	-ldflags "-X github.com/strata-ml/strata/internal/provenance.version=... -X ...commit=..."
var (
	version = "dev"
	commit  = ""
)

// Tool identifies the build of strata that wrote an output.
type Tool struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
	// Backend is the BLAS/LAPACK backend the binary was built with:
	// gonum (pure Go) or openblas (compute.Backend).
	Backend string `json:"backend"`
}

// Version returns the build's version, commit (from the linker flags, else
// from the module's VCS stamp, else "unknown"), Go version and BLAS
// backend.
func Version() Tool {
	c := commit
	if c == "" {
		c = "unknown"
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	return Tool{Version: version, Commit: c, GoVersion: runtime.Version(), Backend: compute.Backend()}
}
