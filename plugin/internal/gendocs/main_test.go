package main

import (
	"bytes"
	"os"
	"testing"
)

// TestGeneratedUpToDate fails when a config field's doc comment in stages/
// or validation/ changed without `go generate ./plugin`.
func TestGeneratedUpToDate(t *testing.T) {
	want, err := generate("../../../stages", "../../../validation")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../fielddocs_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("plugin/fielddocs_gen.go is stale: run go generate ./plugin")
	}
}
