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
	"strings"
)

func main() {
	out := flag.String("out", "docs/EVIDENCE.md", "the markdown file to write (- for stdout)")
	cpuinfo := flag.String("cpuinfo", "/proc/cpuinfo", "where to read the CPU model and count")
	strata := flag.String("strata", "bin/strata", "the strata binary, as the commands show it")
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
	if err := run(*out, *cpuinfo, *strata, cmd, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "evidence:", err)
		os.Exit(1)
	}
}

func run(out, cpuinfo, strata, cmd string, dirs []string) error {
	d := &doc{Strata: strata, Render: cmd}
	var err error
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
	return os.WriteFile(out, md, 0o644)
}

// check refuses sweeps the reading cannot put side by side: the same
// number of candidates, in the same order of structures.
func (d *doc) check() error {
	first := d.Sets[0]
	for _, ds := range d.Sets[1:] {
		if len(ds.Res.Candidates) != len(first.Res.Candidates) {
			return fmt.Errorf("%s has %d candidates, %s %d: the sweeps must try the same candidates", ds.Dir, len(ds.Res.Candidates), first.Dir, len(first.Res.Candidates))
		}
		for i := range ds.Res.Candidates {
			a, b := &first.Res.Candidates[i], &ds.Res.Candidates[i]
			if a.Convert.Structure != b.Convert.Structure || a.Convert.Residual != b.Convert.Residual || a.Retract != b.Retract {
				return fmt.Errorf("candidate %d is %s in %s but %s in %s: the sweeps must list the same candidates in the same order", i+1, a.Name, first.Dir, b.Name, ds.Dir)
			}
		}
	}
	return nil
}
