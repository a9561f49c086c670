package arrowio

import (
	"errors"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-ml/strata/compute"
)

// update rewrites the golden fixtures under testdata/ instead of comparing.
var update = flag.Bool("update", false, "rewrite golden fixtures and fuzz seed corpora")

// fixture returns the path of a shared fixture under the repository's
// testdata/arrowio directory.
func fixture(name string) string {
	return filepath.Join("..", "testdata", "arrowio", name)
}

// wantFormatError fails unless err is a *FormatError wrapping sentinel whose
// message contains every one of substrs.
func wantFormatError(t *testing.T, err error, sentinel error, substrs ...string) *FormatError {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one wrapping %v containing %q", sentinel, substrs)
	}
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("got %T %q, want a *FormatError", err, err)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Errorf("error %q does not wrap %v", err, sentinel)
	}
	for _, s := range substrs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
	return fe
}

// sameBits reports whether a and b hold the same float32 bit patterns.
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// randTensor returns a seeded tensor of the given shape with values of
// every magnitude (float32-representable by construction).
func randTensor(rng *rand.Rand, name string, role compute.Role, shape ...int64) Tensor {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(9)-4)))
	}
	return Tensor{Name: name, Role: role, Shape: shape, Data: data}
}

// mlp returns a seeded two-layer MLP model: 4 -> 8 -> relu -> 3.
func mlp(seed uint64) *Model {
	rng := rand.New(rand.NewPCG(seed, 1))
	return &Model{
		Arch: Architecture{
			FormatVersion: 1, Task: compute.TaskClassification, Inputs: 4,
			Layers: []Layer{
				{Name: "0", Kind: compute.KindLinear, In: 4, Out: 8, Bias: true},
				{Name: "1", Kind: compute.KindActivation, Activation: "relu"},
				{Name: "2", Kind: compute.KindLinear, In: 8, Out: 3, Bias: true},
			},
			Classes: []string{"a", "b", "c"},
		},
		Tensors: []Tensor{
			randTensor(rng, "0.weight", compute.RoleWeight, 8, 4),
			randTensor(rng, "0.bias", compute.RoleBias, 8),
			randTensor(rng, "2.weight", compute.RoleWeight, 3, 8),
			randTensor(rng, "2.bias", compute.RoleBias, 3),
		},
	}
}

// listDir returns the names in dir.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}
