package compute

import (
	"encoding/binary"
	"math"
	"os"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// readF64 reads a row-major m x n float64 matrix stored little-endian.
func readF64(t *testing.T, path string, m, n int) *mat.Dense {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 8*m*n {
		t.Fatalf("%s: %d bytes, want %d", path, len(b), 8*m*n)
	}
	d := make([]float64, m*n)
	for i := range d {
		d[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return mat.NewDense(m, n, d)
}

// TestSVDNonconvergenceFixture is a 64 x 64 residual W - S (a trained
// wine layer minus its rank-16 truncation) on which OpenBLAS 0.3.21's
// dgesdd reports non-convergence: the truncated SVD must still succeed,
// on every backend, with the optimal error. (backend_openblas_test.go
// checks that dgesdd itself fails on it, so the fallback is exercised.)
func TestSVDNonconvergenceFixture(t *testing.T) {
	r := readF64(t, "testdata/gesdd-nonconvergence-64x64.f64", 64, 64)
	const k = 4
	u, s, v, err := TruncatedSVD(r, k, 1)
	if err != nil {
		t.Fatal(err)
	}
	var ref mat.SVD
	if !ref.Factorize(r, mat.SVDNone) {
		t.Fatal("gonum SVD failed")
	}
	want := ref.Values(nil)
	for i := range k {
		if math.Abs(s[i]-want[i]) > 1e-12*want[0] {
			t.Errorf("sigma_%d = %v, want %v", i, s[i], want[i])
		}
	}
	// ||R - U S V^T||_F equals the tail of the spectrum.
	var us, approx mat.Dense
	us.Mul(u, mat.NewDiagDense(k, s))
	approx.Mul(&us, v.T())
	approx.Sub(r, &approx)
	var tail float64
	for _, x := range want[k:] {
		tail += x * x
	}
	if got := mat.Norm(&approx, 2); math.Abs(got-math.Sqrt(tail)) > 1e-10*want[0] {
		t.Errorf("residual %v, want the tail %v", got, math.Sqrt(tail))
	}
}
