//go:build fftw

package testbin

func init() { backendTags = append(backendTags, "fftw") }
