package arrowio

import (
	"bytes"
	"testing"
)

func TestModelStreamRoundTrip(t *testing.T) {
	m := mlp(7)
	m.Meta = map[string]string{"origin": "test"}
	var stream bytes.Buffer
	if err := EncodeModelStream(&stream, m); err != nil {
		t.Fatal(err)
	}
	if bytes.HasPrefix(stream.Bytes(), arrowMagic) {
		t.Fatal("EncodeModelStream wrote an IPC file (magic present), want a stream")
	}
	got, err := ReadModelStream(bytes.NewReader(stream.Bytes()), int64(stream.Len()), "model.arrows")
	if err != nil {
		t.Fatal(err)
	}
	if got.Meta["origin"] != "test" || len(got.Tensors) != len(m.Tensors) {
		t.Fatalf("got meta %v and %d tensors, want origin=test and %d", got.Meta, len(got.Tensors), len(m.Tensors))
	}
	for i := range m.Tensors {
		if got.Tensors[i].Name != m.Tensors[i].Name || !sameBits(got.Tensors[i].Data, m.Tensors[i].Data) {
			t.Errorf("tensor %d: got %q, want %q with the same bits", i, got.Tensors[i].Name, m.Tensors[i].Name)
		}
	}

	// The stream, framed as a file, is byte for byte what EncodeModel
	// writes, so a model crossing the plugin boundary hashes the same.
	var viaStream, direct bytes.Buffer
	if err := StreamToFile(&viaStream, bytes.NewReader(stream.Bytes()), int64(stream.Len()), "s"); err != nil {
		t.Fatal(err)
	}
	if err := EncodeModel(&direct, m); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(viaStream.Bytes(), direct.Bytes()) {
		t.Errorf("StreamToFile(EncodeModelStream(m)) differs from EncodeModel(m): %d vs %d bytes", viaStream.Len(), direct.Len())
	}
	var back bytes.Buffer
	if err := FileToStream(&back, bytes.NewReader(direct.Bytes()), int64(direct.Len()), "f"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Bytes(), stream.Bytes()) {
		t.Errorf("FileToStream(EncodeModel(m)) differs from EncodeModelStream(m)")
	}
}

func TestDatasetStream(t *testing.T) {
	tests := []struct {
		name string
		opts []Option
	}{
		{"list", nil},
		{"tensor", []Option{WithFeatureLayout(LayoutTensor)}},
		{"columns", []Option{WithFeatureLayout(LayoutColumns), withBatchRows(7)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := randDataset(3, 50, 5, true, true)
			var stream bytes.Buffer
			if err := EncodeDatasetStream(&stream, ds, tt.opts...); err != nil {
				t.Fatal(err)
			}
			got, err := ReadDatasetFrom(bytes.NewReader(stream.Bytes()), int64(stream.Len()), "d.arrows")
			if err != nil {
				t.Fatal(err)
			}
			equalDatasets(t, got, ds, ds.FeatureNames)
			var file bytes.Buffer
			if err := StreamToFile(&file, bytes.NewReader(stream.Bytes()), int64(stream.Len()), "d.arrows"); err != nil {
				t.Fatal(err)
			}
			got, err = ReadDatasetFrom(bytes.NewReader(file.Bytes()), int64(file.Len()), "d.arrow")
			if err != nil {
				t.Fatal(err)
			}
			equalDatasets(t, got, ds, ds.FeatureNames)
		})
	}
}

func TestStreamInvalid(t *testing.T) {
	var stream bytes.Buffer
	if err := EncodeModelStream(&stream, mlp(1)); err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	if err := EncodeModel(&file, mlp(1)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		run  func() error
	}{
		{"truncated stream", func() error {
			b := stream.Bytes()[:stream.Len()/2]
			return StreamToFile(&bytes.Buffer{}, bytes.NewReader(b), int64(len(b)), "x.arrows")
		}},
		{"garbage stream", func() error {
			b := []byte("not arrow at all, not at all")
			_, err := ReadModelStream(bytes.NewReader(b), int64(len(b)), "x.arrows")
			return err
		}},
		{"file given as stream", func() error {
			return StreamToFile(&bytes.Buffer{}, bytes.NewReader(file.Bytes()), int64(file.Len()), "x.arrows")
		}},
		{"stream given as file", func() error {
			return FileToStream(&bytes.Buffer{}, bytes.NewReader(stream.Bytes()), int64(stream.Len()), "x.arrow")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantFormatError(t, tt.run(), ErrFormat, "x.arrow")
		})
	}
	if err := EncodeModelStream(&bytes.Buffer{}, &Model{}); err == nil {
		t.Error("EncodeModelStream of an invalid model: got no error")
	}
}
