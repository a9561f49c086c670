package datasets

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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
		// Sizes and first values from the UCI descriptions (README.md) and
		// the files' first data lines.
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

// TestSameAsBefore: the data sets read through arrowio's CSV reader are
// the ones the former line parser read: a checksum over every value,
// recorded from it. The demo's split, and so its report, depend on them.
func TestSameAsBefore(t *testing.T) {
	want := map[string]string{
		"digits": "daea2ac9394f6b4da0301860d62a980fbb1b87fb01bede0ed31b5f5bb3cecce5",
		"wine":   "0410a4ad8a24b298c3643aaf246208b53814258e6cda0b5f672c9bc281ea8cae",
		"iris":   "3e819731a5b8f9f7ebe4b77efda14b52c32ddc24184bb73ae130d0d287f411fa",
	}
	for _, name := range Names {
		s, err := Load(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := checksum(s.Dataset); got != want[name] {
			t.Errorf("%s: checksum %s, want %s", name, got, want[name])
		}
	}
	if d, _ := Load("digits"); d.Describe() != "embedded digits data (UCI Machine Learning Repository, CC BY 4.0), 1797 rows, 64 features, 10 classes" {
		t.Errorf("Describe: %q", d.Describe())
	}
}

// checksum is the SHA-256 of the features (row-major), the labels and the
// feature names, as text.
func checksum(ds *arrowio.Dataset) string {
	h := sha256.New()
	fmt.Fprint(h, ds.N, ds.D, ds.X, ds.Y, ds.FeatureNames)
	return hex.EncodeToString(h.Sum(nil))
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
