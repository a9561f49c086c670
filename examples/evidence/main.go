// Command evidence renders docs/EVIDENCE.md from the outputs of the
// evidence sweeps (`make evidence`): one `strata sweep` per data
// set, with the configs of this directory.
//
//	bin/strata sweep --config examples/evidence/digits.yaml --out bin/evidence/digits
//	bin/strata sweep --config examples/evidence/wine.yaml --out bin/evidence/wine
//	bin/strata sweep --config examples/evidence/iris.yaml --out bin/evidence/iris
//	go run ./examples/evidence -out docs/EVIDENCE.md bin/evidence/digits bin/evidence/wine bin/evidence/iris
//
// It reads each DIR/sweep.json, the validation.json of every run it lists
// and each seed's baseline finetune.json, and writes the commands, the
// machine, the protocol, one table per data set against the baseline and
// one against the control, and a reading of the claims by the criteria of
// claims.go. The document depends only on those files, /proc/cpuinfo and
// the flags: a rerun changes only the run date and the wall times. The BLAS
// backend is the one sweep.json records (tool.backend).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	out := flag.String("out", "docs/EVIDENCE.md", "the markdown file to write (- for stdout)")
	cpuinfo := flag.String("cpuinfo", "/proc/cpuinfo", "where to read the CPU model and count")
	strata := flag.String("strata", "bin/strata", "the strata binary, as the commands show it")
	mnist := flag.String("mnist", "", "the directory of the MNIST subset (its mnist.json) the mnist* sweeps read")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./examples/evidence [flags] SWEEP_DIR...\n\nRenders docs/EVIDENCE.md from the outputs of strata sweep.\n\nFlags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	cmd := "go run ./examples/evidence " + strings.Join(os.Args[1:], " ")
	if err := run(*out, *cpuinfo, *strata, *mnist, cmd, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "evidence:", err)
		os.Exit(1)
	}
}

// mnistInfo is the mnist.json `go run ./examples/evidence/mnist` writes
// beside the CSV files.
type mnistInfo struct {
	Command   string
	Module    string
	TrainRows int `json:"train_rows"`
	TestRows  int `json:"test_rows"`
	Features  int
}

func run(out, cpuinfo, strata, mnist, cmd string, dirs []string) error {
	d := &doc{Strata: strata, Render: cmd}
	var err error
	if mnist != "" {
		d.MNIST = new(mnistInfo)
		if err := readJSON(filepath.Join(mnist, "mnist.json"), d.MNIST); err != nil {
			return err
		}
	}
	if d.Machine.CPU, d.Machine.CPUs, err = readCPUInfo(cpuinfo); err != nil {
		return err
	}
	for _, dir := range dirs {
		ds, err := loadDataSet(dir)
		if err != nil {
			return err
		}
		d.Sets = append(d.Sets, ds)
	}
	if err := d.check(); err != nil {
		return err
	}
	d.Machine.Backend = d.Sets[0].Res.Tool.Backend
	md := render(d)
	if out == "-" {
		_, err = os.Stdout.Write(md)
		return err
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, md, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// check refuses a data set that tries two candidates the reading cannot
// tell apart (the same rowKey).
func (d *doc) check() error {
	for _, ds := range d.Sets {
		seen := map[string]string{}
		for i := range ds.Res.Candidates {
			c := &ds.Res.Candidates[i]
			k := rowKey(c)
			if other, ok := seen[k]; ok {
				return fmt.Errorf("%s: candidates %s and %s have the same conversion: the reading cannot put them in different rows", ds.Dir, other, c.Name)
			}
			seen[k] = c.Name
		}
	}
	return nil
}
