//go:build linux || darwin

package arrowio

import "syscall"

// readOnly write-protects a mapping (a no-op for Go memory), so that a write
// through a slice of it faults instead of silently copying the page.
func (fm *fileMap) readOnly() error {
	if !fm.mapped || len(fm.data) == 0 {
		return nil
	}
	return syscall.Mprotect(fm.data, syscall.PROT_READ)
}
