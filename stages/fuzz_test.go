package stages

import (
	"errors"
	"testing"
)

// FuzzParseShard feeds arbitrary --layers values: the parser either
// returns distinct in-range positions or a bad-input error, never panics.
func FuzzParseShard(f *testing.F) {
	for _, s := range []string{"", "0", "0-3", "0,2,5-7", "3-1", "-1", "a-b", "1,1,1", "0-99999999999999999999"} {
		f.Add(s, 8)
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 0 || n > 1<<16 {
			return
		}
		idx, err := parseShard(s, n)
		if err != nil {
			if !errors.Is(err, ErrInput) {
				t.Fatalf("parseShard(%q, %d): error %v is not a bad-input error", s, n, err)
			}
			return
		}
		seen := map[int]bool{}
		for _, i := range idx {
			if i < 0 || i >= n || seen[i] {
				t.Fatalf("parseShard(%q, %d) = %v: position %d out of range or repeated", s, n, idx, i)
			}
			seen[i] = true
		}
	})
}

// FuzzParseKronFactors feeds arbitrary --kron-factors values.
func FuzzParseKronFactors(f *testing.F) {
	for _, s := range []string{"", "8x8", "1x7", "0x3", "x", "8by8", "-2x3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fs, err := parseKronFactors(s)
		if err != nil {
			if !errors.Is(err, ErrInput) {
				t.Fatalf("parseKronFactors(%q): error %v is not a bad-input error", s, err)
			}
			return
		}
		if s != "" && (fs[0] < 1 || fs[1] < 1) {
			t.Fatalf("parseKronFactors(%q) = %v", s, fs)
		}
	})
}
