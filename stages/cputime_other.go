//go:build !unix

package stages

import "time"

// processCPU returns 0: the process's CPU time is read on Unix systems
// only (latency_ms's cpu_ms is then 0 and says nothing).
func processCPU() time.Duration { return 0 }
