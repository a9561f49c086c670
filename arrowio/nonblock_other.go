//go:build !unix

package arrowio

const nonblock = 0
