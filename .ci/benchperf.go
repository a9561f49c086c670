//go:build ignore

// benchperf prints the performance table (README.md, Performance) from
// the outputs `make bench` collects: strata's finetune samples/s against PyTorch's (same machine,
// threads, batch and hyper-parameters, measured in the same run), monarch
// vs dense apply + gradients, convert and polar times, loading a 1 GiB
// model file (arrowio's BenchmarkLoadModel), each with its target, and the
// BLAS backend and OpenBLAS core type the run used.
//
//	go run .ci/benchperf.go bench-train.txt bench-torch.txt bench-apply.txt bench-convert.txt bench-load.txt
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strconv"
)

var (
	benchLine = regexp.MustCompile(`^Benchmark(\S+?)(-\d+)?\s+\d+\s+([\d.]+) ns/op(.*)$`)
	rateField = regexp.MustCompile(`([\d.]+) samples/s`)
	gbsField  = regexp.MustCompile(`([\d.]+) GB/s`)
	rssField  = regexp.MustCompile(`([\d.]+) peakRSS/file`)
	torchLine = regexp.MustCompile(`^torch mlp (\S+) samples/s ([\d.]+)`)
	backLine  = regexp.MustCompile(`^backend: (.*)$`)
)

func main() {
	ns := map[string]float64{}   // benchmark name -> ns/op
	rate := map[string]float64{} // benchmark name -> samples/s
	gbs := map[string]float64{}  // benchmark name -> GB/s
	rss := map[string]float64{}  // benchmark name -> peak RSS / file size
	torch := map[string]float64{}
	backend := "unknown"
	for _, path := range os.Args[1:] {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			t := sc.Text()
			if m := backLine.FindStringSubmatch(t); m != nil {
				backend = m[1]
			}
			if m := torchLine.FindStringSubmatch(t); m != nil {
				torch[m[1]], _ = strconv.ParseFloat(m[2], 64)
			}
			if m := benchLine.FindStringSubmatch(t); m != nil {
				ns[m[1]], _ = strconv.ParseFloat(m[3], 64)
				if r := rateField.FindStringSubmatch(m[4]); r != nil {
					rate[m[1]], _ = strconv.ParseFloat(r[1], 64)
				}
				if r := gbsField.FindStringSubmatch(m[4]); r != nil {
					gbs[m[1]], _ = strconv.ParseFloat(r[1], 64)
				}
				if r := rssField.FindStringSubmatch(m[4]); r != nil {
					rss[m[1]], _ = strconv.ParseFloat(r[1], 64)
				}
			}
		}
		f.Close()
	}
	host, _ := os.Hostname()
	fmt.Printf("\nperformance table: backend %s, GOMAXPROCS/threads 2, host %s\n\n", backend, host)
	fmt.Println("| benchmark | strata | reference | ratio | target | met |")
	fmt.Println("|---|---:|---:|---:|---:|---|")
	row := func(name, s, ref string, ratio float64, ok bool, target float64, higher bool) {
		r, met := "-", "n/a"
		if ok {
			r = strconv.FormatFloat(ratio, 'f', 2, 64) + "x"
			met = "no"
			if (higher && ratio >= target) || (!higher && ratio <= target) {
				met = "yes"
			}
		}
		cmp := ">="
		if !higher {
			cmp = "<="
		}
		fmt.Printf("| %s | %s | %s | %s | %s %gx | %s |\n", name, s, ref, r, cmp, target, met)
	}
	for _, w := range []struct {
		arch   string
		target float64
	}{{"64-512-512-10", 1.5}, {"64-2048-2048-10", 1.0}} {
		s, okS := rate["TrainStep/"+w.arch+"/dense"]
		p, okP := torch[w.arch]
		ref := "not measured"
		if okP {
			ref = fmt.Sprintf("%.0f samples/s (PyTorch)", p)
		}
		row("finetune "+w.arch+", batch 128, AdamW", fmt.Sprintf("%.0f samples/s", s), ref, s/p, okS && okP, w.target, true)
	}
	d, okD := ns["ApplyGrad/n=4096/dense"]
	m, okM := ns["ApplyGrad/n=4096/monarch_b64_r1"]
	row("monarch b64 r1 fwd+bwd, n 4096, batch 256", fmt.Sprintf("%.1f ms", m/1e6), fmt.Sprintf("%.1f ms (dense)", d/1e6), d/m, okD && okM, 10, true)
	c, okC := ns["ConvertLayer"]
	row("convert 4096 layer: monarch b4 + rank-16", fmt.Sprintf("%.2f s", c/1e9), "5 s (budget)", c/5e9, okC, 1, false)
	pn, okN := ns["Polar/n=2048/newton"]
	ps, okV := ns["Polar/n=2048/svd"]
	row("polar factor n 2048", fmt.Sprintf("%.2f s", pn/1e9), fmt.Sprintf("%.2f s (SVD polar)", ps/1e9), pn/ps, okN && okV, 2, false)
	// Loading: open + validate + one checksum pass over every value, warm
	// page cache; peak RSS of a fresh process doing one load.
	if g, ok := gbs["LoadModel/MapModel"]; ok {
		r := rss["LoadModel/MapModel"]
		met := "no"
		if g >= 2 && r <= 1.2 {
			met = "yes"
		}
		fmt.Printf("| load 1 GiB model file, warm page cache (MapModel) | %.2f GB/s, peak RSS %.2fx file | %.2f GB/s, %.2fx (ReadModel, copying) | %.2fx | >= 2 GB/s, <= 1.2x | %s |\n",
			g, r, gbs["LoadModel/ReadModel"], rss["LoadModel/ReadModel"], g/2, met)
	}
	for _, arch := range []string{"64-512-512-10", "64-2048-2048-10"} {
		s1, ok1 := rate["TrainShards/"+arch+"/shards=1"]
		s2, ok2 := rate["TrainShards/"+arch+"/shards=2"]
		if ok1 && ok2 {
			fmt.Printf("\nthreading %s: 1 shard x all BLAS threads %.0f samples/s, 2 shards x 1 BLAS thread %.0f samples/s", arch, s1, s2)
		}
	}
	fmt.Println()
}
