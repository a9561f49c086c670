package data

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/strata-ml/strata/arrowio"
)

func TestLoad(t *testing.T) {
	tests := []struct {
		name          string
		rows, d       int
		classes       int
		firstClass    string
		maxX, firstX0 float64
	}{
		// Sizes and first values from /work/shared/data/README.md and the
		// files' first lines.
		{name: "digits", rows: 1797, d: 64, classes: 10, firstClass: "0", maxX: 16, firstX0: 0},
		{name: "wine", rows: 178, d: 13, classes: 3, firstClass: "class_0", maxX: 1680, firstX0: 14.23},
		{name: "iris", rows: 150, d: 4, classes: 3, firstClass: "setosa", maxX: 7.9, firstX0: 5.1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Load(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			ds := s.Dataset
			if ds.N != tt.rows || ds.D != tt.d || len(ds.X) != ds.N*ds.D || len(ds.Y) != ds.N || len(ds.FeatureNames) != ds.D {
				t.Fatalf("got N=%d D=%d len(X)=%d len(Y)=%d names=%d, want N=%d D=%d", ds.N, ds.D, len(ds.X), len(ds.Y), len(ds.FeatureNames), tt.rows, tt.d)
			}
			if len(s.Classes) != tt.classes || s.Classes[0] != tt.firstClass {
				t.Errorf("classes %q, want %d starting with %q", s.Classes, tt.classes, tt.firstClass)
			}
			seen := make([]bool, tt.classes)
			for i, y := range ds.Y {
				k := int(y)
				if float64(k) != y || k < 0 || k >= tt.classes {
					t.Fatalf("row %d: label %v not in [0, %d)", i, y, tt.classes)
				}
				seen[k] = true
			}
			if slices.Contains(seen, false) {
				t.Errorf("not every class occurs: %v", seen)
			}
			if got := slices.Max(ds.X); got != tt.maxX {
				t.Errorf("max feature %v, want %v", got, tt.maxX)
			}
			if ds.X[0] != tt.firstX0 {
				t.Errorf("first value %v, want %v", ds.X[0], tt.firstX0)
			}
		})
	}
	if _, err := Load("mnist"); err == nil {
		t.Error("Load(mnist): no error")
	}
}

func TestWriteReadsBack(t *testing.T) {
	for _, ext := range []string{".csv", ".arrow", ".parquet"} {
		path := filepath.Join(t.TempDir(), "iris"+ext)
		if err := Write("iris", path); err != nil {
			t.Fatal(err)
		}
		got, err := arrowio.ReadDataset(path)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := Iris()
		if got.N != want.N || got.D != want.D || !slices.Equal(got.Y, want.Y) {
			t.Fatalf("%s: got N=%d D=%d, want N=%d D=%d and the same labels", ext, got.N, got.D, want.N, want.D)
		}
		for k := range want.X {
			// Arrow and Parquet store float32 features.
			if float32(got.X[k]) != float32(want.X[k]) {
				t.Fatalf("%s: X[%d] = %v, want %v", ext, k, got.X[k], want.X[k])
			}
		}
	}
}
