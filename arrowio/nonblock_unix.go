//go:build unix

package arrowio

import "syscall"

// nonblock opens a named pipe for writing without waiting for a reader.
const nonblock = syscall.O_NONBLOCK
