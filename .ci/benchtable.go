//go:build ignore

// benchtable prints the benchmark table of `make bench` from `go test
// -bench` output files: per width, every family's apply and apply +
// gradients time with its speed-up over dense, and projection times.
//
//	go run .ci/benchtable.go bench-apply.txt bench-project.txt
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var line = regexp.MustCompile(`^Benchmark(\w+)/n=(\d+)/(\S+?)(-\d+)?\s+\d+\s+([\d.]+) ns/op`)

type key struct {
	bench string
	n     int
	op    string
}

func main() {
	ns := map[key]float64{}
	var order []string
	seen := map[string]bool{}
	for _, path := range os.Args[1:] {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			m := line.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			n, _ := strconv.Atoi(m[2])
			v, _ := strconv.ParseFloat(m[5], 64)
			ns[key{m[1], n, m[3]}] = v
			if !seen[m[3]] {
				seen[m[3]] = true
				order = append(order, m[3])
			}
		}
		f.Close()
	}
	var sizes []int
	sizeSeen := map[int]bool{}
	for k := range ns {
		if !sizeSeen[k.n] {
			sizeSeen[k.n] = true
			sizes = append(sizes, k.n)
		}
	}
	sort.Ints(sizes)
	ms := func(v float64, ok bool) string {
		if !ok {
			return "-"
		}
		return strconv.FormatFloat(v/1e6, 'f', 3, 64)
	}
	ratio := func(dense, v float64, ok bool) string {
		if !ok || v == 0 || dense == 0 {
			return "-"
		}
		return strconv.FormatFloat(dense/v, 'f', 1, 64) + "x"
	}
	for _, n := range sizes {
		fmt.Printf("\nn = %d, batch 256, float32 apply; float64 projection\n\n", n)
		fmt.Println("| operator | apply ms | vs dense | apply+grad ms | vs dense | project ms |")
		fmt.Println("|---|---:|---:|---:|---:|---:|")
		da := ns[key{"Apply", n, "dense"}]
		dg := ns[key{"ApplyGrad", n, "dense"}]
		for _, op := range order {
			a, okA := ns[key{"Apply", n, op}]
			g, okG := ns[key{"ApplyGrad", n, op}]
			p, okP := ns[key{"Project", n, op}]
			if !okA && !okG && !okP {
				continue
			}
			if strings.HasPrefix(op, "monarch_b") && !okA {
				continue
			}
			fmt.Printf("| %s | %s | %s | %s | %s | %s |\n", op, ms(a, okA), ratio(da, a, okA), ms(g, okG), ratio(dg, g, okG), ms(p, okP))
		}
	}
}
