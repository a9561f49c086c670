package compute

import (
	"slices"
	"testing"
)

func TestToeplitzOperator(t *testing.T) {
	tests := []struct {
		name    string
		out, in int
	}{
		{"square 6", 6, 6},
		{"square 13 (embedding 25)", 13, 13},
		{"square 32 (embedding 64)", 32, 32},
		{"tall 7x3", 7, 3},
		{"wide 2x9", 2, 9},
		{"wide 5x40", 5, 40},
		{"row 1x5", 1, 5},
		{"column 4x1", 4, 1},
		{"scalar 1x1", 1, 1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := newRand(uint64(1000 + i))
			spec := Spec{Family: FamilyToeplitz, Out: tt.out, In: tt.in}
			op := randomMember(t, spec, rng)
			tp := op.(*Toeplitz[float64])
			if m := tp.emb.size; m < tt.out+tt.in-1 || !isFFTSize(m) {
				t.Errorf("embedding size %d: want a 2^a 3^b 5^c >= %d", m, tt.out+tt.in-1)
			}
			if got, want := NumParams(op), tt.out+tt.in-1; got != want {
				t.Errorf("NumParams = %d, want %d", got, want)
			}
			checkOperator(t, op, rng)
			checkRecovery(t, spec, rng)
		})
	}
}

func TestToeplitzLayout(t *testing.T) {
	// T[i][j] = t[i - j + in - 1]: t runs from the top-right corner down
	// to the bottom-left one.
	tests := []struct {
		name    string
		out, in int
		t       []float64
		want    []float64
	}{
		{"tall", 3, 2, []float64{1, 2, 3, 4}, []float64{
			2, 1,
			3, 2,
			4, 3}},
		{"wide", 2, 3, []float64{1, 2, 3, 4}, []float64{
			3, 2, 1,
			4, 3, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Dense[float64](NewToeplitz(tt.out, tt.in, tt.t)).RawMatrix().Data
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestToeplitzProjectionOptimal(t *testing.T) {
	tests := []struct {
		name    string
		out, in int
	}{
		{"square", 10, 10},
		{"tall", 14, 5},
		{"wide", 3, 11},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := randDense(newRand(uint64(1100+i)), tt.out, tt.in)
			groups := groupEntries(w, func(i, j int) int { return i - j })
			if len(groups) != tt.out+tt.in-1 {
				t.Fatalf("%d diagonals, want %d", len(groups), tt.out+tt.in-1)
			}
			for d, g := range groups {
				if want := diagonalLength(d, tt.out, tt.in); len(g) != want {
					t.Errorf("diagonal %d: %d entries, diagonalLength says %d", d, len(g), want)
				}
			}
			checkProjectionOptimal(t, w, Spec{Family: FamilyToeplitz}, withinGroupSS(groups))
		})
	}
}
