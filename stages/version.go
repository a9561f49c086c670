// Package stages implements the four pilot stages (convert, finetune,
// validate, report) and the commands around them as plain functions with
// typed configs. The CLI and the go-plugin server are thin shells over it.
package stages

import (
	"github.com/strata-ml/strata/compute"

	"runtime"
	"runtime/debug"
)

// These are set at link time by the Makefile:
//
//	-ldflags "-X github.com/strata-ml/strata/stages.version=... -X ...commit=..."
var (
	version = "dev"
	commit  = ""
)

// VersionInfo identifies the build.
type VersionInfo struct {
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
func Version() VersionInfo {
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
	return VersionInfo{Version: version, Commit: c, GoVersion: runtime.Version(), Backend: compute.Backend()}
}
