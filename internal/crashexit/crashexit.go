// Package crashexit makes a crash of strata end unlike every exit code
// strata chooses. The Go runtime ends a process on an unrecovered panic
// or a fatal error (out of memory, a stack overflow) with exit code 2,
// which is strata's code for bad input (never retry): a pipeline would
// give up on what a retry might get past. Setup makes the runtime abort
// instead: the process dies by SIGABRT (status 134 in a shell and in
// Kubernetes), after the usual stack trace on stderr.
package crashexit

import (
	"os"
	"runtime/debug"
)

// Setup makes an unrecovered panic or a fatal runtime error abort the
// process (SIGABRT) rather than exit 2, without writing a core file
// (unless the user asked for that behaviour with GOTRACEBACK, which is
// then left alone). Call it first in main.
func Setup() {
	if os.Getenv("GOTRACEBACK") != "" {
		return
	}
	noCoreFile()
	debug.SetTraceback("crash")
}
