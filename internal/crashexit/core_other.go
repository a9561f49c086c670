//go:build !unix

package crashexit

func noCoreFile() {}
