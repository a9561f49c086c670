// Package data embeds the small real data sets strata's tests, examples
// and demo run on: digits, wine and iris from the UCI Machine Learning
// Repository (CC BY 4.0; see README.md in this directory for the
// attribution). A fresh clone needs nothing else.
package data

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/strata-ml/strata/arrowio"
)

var (
	//go:embed digits.csv.gz
	digitsGz []byte
	//go:embed wine_data.csv
	wineCSV []byte
	//go:embed iris.csv
	irisCSV []byte
)

// Names lists the embedded data sets.
var Names = []string{"digits", "wine", "iris"}

// Set is an embedded data set: a classification table and its class names
// (Classes[k] names label k).
type Set struct {
	Name    string
	Dataset *arrowio.Dataset
	Classes []string
}

// Load parses the embedded data set of the given name (one of Names). Each
// call returns a fresh copy the caller may modify.
func Load(name string) (*Set, error) {
	switch name {
	case "digits":
		return parseDigits()
	case "wine":
		return parseHeadered(name, wineCSV, wineFeatures)
	case "iris":
		return parseHeadered(name, irisCSV, irisFeatures)
	}
	return nil, fmt.Errorf("data: unknown data set %q (want one of %s)", name, strings.Join(Names, ", "))
}

// Digits returns the UCI optical digits test split: 1797 rows of 64 pixel
// intensities (0..16, an 8x8 image row by row, features "px_<row>_<col>")
// and a class 0..9.
func Digits() (*arrowio.Dataset, error) { return dataset("digits") }

// Wine returns the UCI wine data: 178 rows of 13 chemical measurements and
// a class 0..2.
func Wine() (*arrowio.Dataset, error) { return dataset("wine") }

// Iris returns Fisher's iris data: 150 rows of 4 measurements (cm) and a
// class 0..2 (setosa, versicolor, virginica).
func Iris() (*arrowio.Dataset, error) { return dataset("iris") }

func dataset(name string) (*arrowio.Dataset, error) {
	s, err := Load(name)
	if err != nil {
		return nil, err
	}
	return s.Dataset, nil
}

// Write writes the embedded data set name to path in the format its
// extension names (.csv, .csv.gz, .arrow, .parquet, ...; see
// arrowio.WriteDataset), with the target in a column named "label", so
// that strata reads it with its defaults.
func Write(name, path string) error {
	s, err := Load(name)
	if err != nil {
		return err
	}
	return arrowio.WriteDataset(path, s.Dataset)
}

// wineFeatures and irisFeatures name the columns in file order (as UCI
// documents them; scikit-learn uses the same names).
var (
	wineFeatures = []string{
		"alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium",
		"total_phenols", "flavanoids", "nonflavanoid_phenols", "proanthocyanins",
		"color_intensity", "hue", "od280_od315_of_diluted_wines", "proline",
	}
	irisFeatures = []string{"sepal_length", "sepal_width", "petal_length", "petal_width"}
)

// parseDigits reads the headerless gzip'd CSV of 64 pixels and a label.
func parseDigits() (*Set, error) {
	zr, err := gzip.NewReader(bytes.NewReader(digitsGz))
	if err != nil {
		return nil, fmt.Errorf("data: digits: %w", err)
	}
	const d = 64
	ds := &arrowio.Dataset{D: d}
	for r := range 8 {
		for c := range 8 {
			ds.FeatureNames = append(ds.FeatureNames, fmt.Sprintf("px_%d_%d", r, c))
		}
	}
	if err := readRows("digits", zr, ds, 1); err != nil {
		return nil, err
	}
	classes := make([]string, 10)
	for k := range classes {
		classes[k] = strconv.Itoa(k)
	}
	return &Set{Name: "digits", Dataset: ds, Classes: classes}, nil
}

// parseHeadered reads a CSV whose first line is
// "N_ROWS,N_FEATURES,class names...".
func parseHeadered(name string, raw []byte, features []string) (*Set, error) {
	header, body, ok := bytes.Cut(raw, []byte("\n"))
	if !ok {
		return nil, fmt.Errorf("data: %s: no header line", name)
	}
	fields := strings.Split(strings.TrimSpace(string(header)), ",")
	if len(fields) < 3 {
		return nil, fmt.Errorf("data: %s: header %q: want N_ROWS,N_FEATURES,class names", name, header)
	}
	rows, err1 := strconv.Atoi(fields[0])
	d, err2 := strconv.Atoi(fields[1])
	if err1 != nil || err2 != nil || d != len(features) {
		return nil, fmt.Errorf("data: %s: header %q: want %d features", name, header, len(features))
	}
	ds := &arrowio.Dataset{D: d, FeatureNames: append([]string(nil), features...)}
	if err := readRows(name, bytes.NewReader(body), ds, 2); err != nil {
		return nil, err
	}
	if ds.N != rows {
		return nil, fmt.Errorf("data: %s: %d rows, the header says %d", name, ds.N, rows)
	}
	return &Set{Name: name, Dataset: ds, Classes: fields[2:]}, nil
}

// readRows appends the rows of r (D features then an integer label per
// line; line numbers in errors start at first) to ds.
func readRows(name string, r io.Reader, ds *arrowio.Dataset, first int) error {
	sc := bufio.NewScanner(r)
	for line := first; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		vals := strings.Split(text, ",")
		if len(vals) != ds.D+1 {
			return fmt.Errorf("data: %s: line %d has %d values, want %d", name, line, len(vals), ds.D+1)
		}
		for j, s := range vals {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return fmt.Errorf("data: %s: line %d: %w", name, line, err)
			}
			if j == ds.D {
				ds.Y = append(ds.Y, v)
			} else {
				ds.X = append(ds.X, v)
			}
		}
		ds.N++
	}
	return sc.Err()
}
