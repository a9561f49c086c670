//go:build unix

package inputfile

import "syscall"

// openFlags opens without blocking: a named pipe with no writer would
// block open. Reads from a regular file are unaffected.
const openFlags = syscall.O_NONBLOCK
