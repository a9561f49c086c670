//go:build openblas

package testbin

func init() { backendTags = append(backendTags, "openblas") }
