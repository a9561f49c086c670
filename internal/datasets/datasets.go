// Package datasets embeds the small real data sets strata's demo, tests
// and examples run on: digits, wine and iris from the UCI Machine Learning
// Repository (CC BY 4.0; README.md in this directory has the
// attribution). A fresh clone needs nothing else. The files are CSV with a
// header row, read by arrowio's CSV reader like any data file a user
// gives.
package datasets

import (
	"bytes"
	_ "embed"
	"fmt"
	"strconv"
	"strings"

	"github.com/strata-ml/strata/arrowio"
)

var (
	//go:embed digits.csv.gz
	digitsCSVGz []byte
	//go:embed wine.csv
	wineCSV []byte
	//go:embed iris.csv
	irisCSV []byte
)

// Names lists the embedded data sets.
var Names = []string{"digits", "wine", "iris"}

// sets are the embedded files (named as arrowio reads them, by
// extension) with their class names (classes[k] names label k).
var sets = map[string]struct {
	file    string
	data    []byte
	classes []string
}{
	"digits": {"digits.csv.gz", digitsCSVGz, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}},
	"wine":   {"wine.csv", wineCSV, []string{"class_0", "class_1", "class_2"}},
	"iris":   {"iris.csv", irisCSV, []string{"setosa", "versicolor", "virginica"}},
}

// Set is an embedded data set: a classification table and its class names
// (Classes[k] names label k).
type Set struct {
	Name    string
	Dataset *arrowio.Dataset
	Classes []string
}

// Load reads the embedded data set of the given name (one of Names). Each
// call returns a fresh copy the caller may modify.
func Load(name string) (*Set, error) {
	s, ok := sets[name]
	if !ok {
		return nil, fmt.Errorf("datasets: unknown data set %q (want one of %s)", name, strings.Join(Names, ", "))
	}
	ds, err := arrowio.ReadDatasetFrom(bytes.NewReader(s.data), int64(len(s.data)), s.file)
	if err != nil {
		return nil, fmt.Errorf("datasets: %s: %w", name, err)
	}
	return &Set{Name: name, Dataset: ds, Classes: append([]string(nil), s.classes...)}, nil
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

// Describe says where the data set comes from, for a report: e.g.
// "embedded digits data (UCI Machine Learning Repository, CC BY 4.0),
// 1797 rows, 64 features, 10 classes".
func (s *Set) Describe() string {
	return fmt.Sprintf("embedded %s data (UCI Machine Learning Repository, CC BY 4.0), %s rows, %d features, %d classes",
		s.Name, strconv.Itoa(s.Dataset.N), s.Dataset.D, len(s.Classes))
}
