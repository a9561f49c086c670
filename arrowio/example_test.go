package arrowio_test

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
)

func ExampleWriteModel() {
	dir, err := os.MkdirTemp("", "arrowio-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "model.arrow")

	m := &arrowio.Model{
		Arch: arrowio.Architecture{
			FormatVersion: arrowio.FormatVersion,
			Task:          compute.TaskRegression,
			Inputs:        2,
			Layers:        []arrowio.Layer{{Name: "0", Kind: compute.KindLinear, In: 2, Out: 1, Bias: true}},
		},
		Tensors: []arrowio.Tensor{
			{Name: "0.weight", Role: compute.RoleWeight, Shape: []int64{1, 2}, Data: []float32{0.5, -1}},
			{Name: "0.bias", Role: compute.RoleBias, Shape: []int64{1}, Data: []float32{0.25}},
		},
	}
	if err := arrowio.WriteModel(path, m); err != nil {
		log.Fatal(err)
	}
	got, err := arrowio.ReadModel(path)
	if err != nil {
		log.Fatal(err)
	}
	w, _ := got.Tensor("0.weight")
	fmt.Println(got.Arch.Task, w.Shape, w.Data)
	// Output: regression [1 2] [0.5 -1]
}

func ExampleParseSafetensors() {
	// A file with one F16 tensor [1.0, -2.0]: an 8-byte little-endian header
	// size, the JSON header, then the data.
	header := `{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}`
	data := []byte{byte(len(header)), 0, 0, 0, 0, 0, 0, 0}
	data = append(data, header...)
	data = append(data, 0x00, 0x3C, 0x00, 0xC0)

	sf, err := arrowio.ParseSafetensors(data, "tiny.safetensors")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sf.Tensors[0].Name, sf.DTypes["w"], sf.Tensors[0].Data)

	// Truncate the data: the reader names the rule that fails.
	_, err = arrowio.ParseSafetensors(data[:len(data)-1], "tiny.safetensors")
	fmt.Println(errors.Is(err, arrowio.ErrFormat))
	fmt.Println(err)
	// Output:
	// w F16 [1 -2]
	// true
	// tiny.safetensors: file length: header and data_offsets need 66 bytes, file has 65
}

func ExampleReadDataset() {
	dir, err := os.MkdirTemp("", "arrowio-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "train.csv")
	if err := os.WriteFile(path, []byte("sepal,petal,label\n5.1,1.4,0\n6.3,4.9,1\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	ds, err := arrowio.ReadDataset(path)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ds.N, ds.D, ds.FeatureNames, ds.X, ds.Y)

	_, err = arrowio.ReadDataset(path, arrowio.WithLabel("species"))
	var fe *arrowio.FormatError
	if errors.As(err, &fe) {
		fmt.Printf("%s %q: %v\n", fe.Kind, fe.Field, fe.Err)
	}
	// Output:
	// 2 2 [sepal petal] [5.1 1.4 6.3 4.9] [0 1]
	// column "species": label column missing (columns: "sepal", "petal", "label")
}
