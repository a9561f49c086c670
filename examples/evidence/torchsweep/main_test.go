package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCountRows checks the data rows of a CSV file are its lines but the
// header, with or without a final newline, and a file without data rows
// is an error naming it.
func TestCountRows(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, text string
		want       int
		err        string
	}{
		{"newline", "a,label\n1,2\n3,4\n", 2, ""},
		{"no final newline", "a,label\n1,2\n3,4", 2, ""},
		{"header only", "a,label\n", 0, "no data rows"},
		{"empty", "", 0, "no data rows"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".csv")
			if err := os.WriteFile(path, []byte(c.text), 0o644); err != nil {
				t.Fatal(err)
			}
			n, err := countRows(path)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), path) {
					t.Errorf("got %d, %v; want an error naming %s with %q", n, err, path, c.err)
				}
				return
			}
			if err != nil || n != c.want {
				t.Errorf("got %d, %v; want %d", n, err, c.want)
			}
		})
	}
}
