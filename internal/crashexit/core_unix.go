//go:build unix

package crashexit

import "syscall"

// noCoreFile sets the soft core file size limit to 0: an abort is how a
// crash ends, not a request for a core dump the size of the heap.
func noCoreFile() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_CORE, &lim) == nil {
		lim.Cur = 0
		_ = syscall.Setrlimit(syscall.RLIMIT_CORE, &lim)
	}
}
