//go:build unix

package stages

import (
	"time"

	"golang.org/x/sys/unix"
)

// processCPU returns the CPU time the process has used, all its threads
// together (CLOCK_PROCESS_CPUTIME_ID), 0 when the clock cannot be read.
func processCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
