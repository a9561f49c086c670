//go:build freebsd || netbsd || openbsd || dragonfly

package arrowio

// readOnly is a no-op where package syscall has no Mprotect: the mapping
// stays copy-on-write, so a write through a slice of it changes a private
// copy of the page, never the file.
func (fm *fileMap) readOnly() error { return nil }
