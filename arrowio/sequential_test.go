package arrowio

import (
	"encoding/json"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/strata-ml/strata/compute"
)

// seqFile returns a SafeFile with the given tensors, as ParseSafetensors
// would produce it.
func seqFile(meta map[string]string, ts ...Tensor) *SafeFile {
	sf := &SafeFile{DTypes: map[string]string{}, Metadata: meta}
	for _, t := range ts {
		t.Role = roleFromName(t.Name)
		sf.Tensors = append(sf.Tensors, t)
		sf.DTypes[t.Name] = "F32"
	}
	return sf
}

func TestModelFromSequential(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	w0 := randTensor(rng, "0.weight", "", 8, 4)
	b0 := randTensor(rng, "0.bias", "", 8)
	w2 := randTensor(rng, "2.weight", "", 5, 8)
	w3 := randTensor(rng, "3.weight", "", 3, 5)
	b3 := randTensor(rng, "3.bias", "", 3)

	sf := seqFile(nil, w2, b0, w0, w3, b3) // file order need not be layer order
	m, err := ModelFromSequential(sf, "tanh", "mlp.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	want := Architecture{
		FormatVersion: 1, Task: compute.TaskClassification, Inputs: 4,
		Layers: []Layer{
			{Name: "0", Kind: compute.KindLinear, In: 4, Out: 8, Bias: true},
			{Name: "1", Kind: compute.KindActivation, Activation: "tanh"},
			{Name: "2", Kind: compute.KindLinear, In: 8, Out: 5},
			{Name: "2_act", Kind: compute.KindActivation, Activation: "tanh"},
			{Name: "3", Kind: compute.KindLinear, In: 5, Out: 3, Bias: true},
		},
	}
	if !reflect.DeepEqual(m.Arch, want) {
		g, _ := json.Marshal(m.Arch)
		w, _ := json.Marshal(want)
		t.Errorf("architecture\ngot  %s\nwant %s", g, w)
	}
	var names, roles []string
	for _, ts := range m.Tensors {
		names, roles = append(names, ts.Name), append(roles, string(ts.Role))
	}
	if want := []string{"0.weight", "0.bias", "2.weight", "3.weight", "3.bias"}; !reflect.DeepEqual(names, want) {
		t.Errorf("tensor order %q want %q", names, want)
	}
	if want := []string{"weight", "bias", "weight", "weight", "bias"}; !reflect.DeepEqual(roles, want) {
		t.Errorf("roles %q want %q", roles, want)
	}
	if !sameBits(m.Tensors[2].Data, w2.Data) {
		t.Error("values changed")
	}
}

func TestModelFromSequentialErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	w := func(name string, shape ...int64) Tensor { return randTensor(rng, name, "", shape...) }
	tests := []struct {
		name       string
		sf         *SafeFile
		activation compute.Activation
		want       string
	}{
		{"shapes do not chain", seqFile(nil, w("0.weight", 8, 4), w("2.weight", 3, 7)), "relu",
			`tensor "2.weight": shape [3 7] does not chain with "0.weight" of shape [8 4]: in 7 != previous out 8`},
		{"no layers", seqFile(nil), "relu", "no layers"},
		{"unknown activation", seqFile(nil, w("0.weight", 2, 2)), "swish", `unknown activation "swish"`},
		{"no activation", seqFile(nil, w("0.weight", 2, 2)), "", "no activation given"},
		{"not a sequential name", seqFile(nil, w("encoder.weight", 2, 2)), "relu", `tensor "encoder.weight": not an nn.Sequential linear parameter`},
		{"buffer of another module", seqFile(nil, w("0.weight", 2, 2), w("1.running_mean", 2)), "relu", `tensor "1.running_mean"`},
		{"leading zero index", seqFile(nil, w("01.weight", 2, 2)), "relu", `tensor "01.weight"`},
		{"weight not 2-D", seqFile(nil, w("0.weight", 4)), "relu", `tensor "0.weight": shape [4] is not a 2-D out x in weight`},
		{"bias without weight", seqFile(nil, w("0.weight", 2, 2), w("2.bias", 2)), "relu", `tensor "2.bias": bias without a weight "2.weight"`},
		{"bias of wrong size", seqFile(nil, w("0.weight", 2, 3), w("0.bias", 3)), "relu", `tensor "0.bias": shape [3] does not match "0.weight" of shape [2 3] (want [2])`},
		{"metadata architecture invalid", seqFile(map[string]string{MetaArchitecture: `{"format_version":1,"nope":1}`}, w("0.weight", 2, 2)), "", `unknown field "nope"`},
		{"metadata architecture shape mismatch", seqFile(map[string]string{MetaArchitecture: `{"format_version":1,"task":"regression","inputs":3,"layers":[{"name":"0","kind":"linear","in":3,"out":2}]}`}, w("0.weight", 2, 2)), "",
			`tensor "0.weight": shape [2 2] does not match layer "0" (want [2 3])`},
		{"metadata architecture missing tensor", seqFile(map[string]string{MetaArchitecture: `{"format_version":1,"task":"regression","inputs":2,"layers":[{"name":"fc","kind":"linear","in":2,"out":2}]}`}, w("0.weight", 2, 2)), "",
			`layer "fc": no tensor "fc.weight"`},
		{"metadata architecture unexpected bias", seqFile(map[string]string{MetaArchitecture: `{"format_version":1,"task":"regression","inputs":2,"layers":[{"name":"0","kind":"linear","in":2,"out":2}]}`}, w("0.weight", 2, 2), w("0.bias", 2)), "",
			`tensor "0.bias": layer "0" has no bias`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ModelFromSequential(tt.sf, tt.activation, "ckpt.safetensors")
			wantFormatError(t, err, ErrFormat, "ckpt.safetensors: ", tt.want)
		})
	}
}

// TestSequentialRoundTrip stores a model as safetensors with
// SequentialTensors and recovers it, architecture included, with
// ModelFromSequential: the "old format kept alongside" path.
func TestSequentialRoundTrip(t *testing.T) {
	m := mlp(21)
	m.Arch.Standardization = &Standardization{Mean: []float64{0.5, 1, 1.5, 2}, Std: []float64{1, 2, 3, 4}}
	m.Meta = map[string]string{"source": "test"}
	ts, meta := SequentialTensors(m)
	if meta["format"] != "pt" || meta[MetaArchitecture] == "" {
		t.Fatalf("metadata %v", meta)
	}
	path := filepath.Join(t.TempDir(), "dense.safetensors")
	if err := WriteSafetensors(path, ts, meta); err != nil {
		t.Fatal(err)
	}
	sf, err := ReadSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ModelFromSequential(sf, "", path)
	if err != nil {
		t.Fatal(err)
	}
	equalModels(t, got, m)
}
