package arrowio

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/strata-ml/strata/compute"
)

// The load benchmark of the performance table (README.md): open a 1 GiB
// model file, validate it and
// make one full pass over every value (a checksum, so that every page of
// the file is really touched), then report GB/s of file and the peak RSS of
// a child process doing exactly that once, as a ratio to the file size.
// The file is written once per run into a temporary directory. Every timed
// load after the first finds the file in the page cache: the numbers are
// warm-cache numbers (the cost of mapping, faulting in and validating, not
// of the disk).

// loadModes are the two readers compared: MapModel aliases the mapping,
// ReadModel copies every value into Go memory.
var loadModes = []string{"MapModel", "ReadModel"}

// bigModelLayers is the shape of the generated model: 4 layers of
// 8192 x 8192 float32 values, 1 GiB of values.
const (
	bigModelLayers = 4
	bigModelWidth  = 8192
)

// writeBigModel writes the benchmark's model to path. The values are
// pseudo-random, so that no page is all zeros.
func writeBigModel(path string) error {
	m := &Model{Arch: Architecture{FormatVersion: FormatVersion, Kind: ArchGeneric}}
	rng := rand.New(rand.NewPCG(1, 9))
	for l := range bigModelLayers {
		name := fmt.Sprintf("layers.%d", l)
		m.Arch.Layers = append(m.Arch.Layers, Layer{Name: name, Kind: compute.KindLinear, In: bigModelWidth, Out: bigModelWidth})
		data := make([]float32, bigModelWidth*bigModelWidth)
		for i := range data {
			data[i] = float32(rng.NormFloat64())
		}
		m.Tensors = append(m.Tensors, Tensor{Name: name + ".weight", Role: compute.RoleWeight, Shape: []int64{bigModelWidth, bigModelWidth}, Data: data})
	}
	return WriteModel(path, m)
}

// checksum sums the bit patterns of every value, with four independent
// accumulators so that the pass runs at memory speed.
func checksum(ts []Tensor) uint64 {
	var s0, s1, s2, s3 uint64
	for _, t := range ts {
		v := t.Data
		i := 0
		for ; i+4 <= len(v); i += 4 {
			w := v[i : i+4 : i+4]
			s0 += uint64(math.Float32bits(w[0]))
			s1 += uint64(math.Float32bits(w[1]))
			s2 += uint64(math.Float32bits(w[2]))
			s3 += uint64(math.Float32bits(w[3]))
		}
		for ; i < len(v); i++ {
			s0 += uint64(math.Float32bits(v[i]))
		}
	}
	return s0 + s1 + s2 + s3
}

// loadOnce opens, validates and checksums path with the reader mode names,
// then releases everything.
func loadOnce(path, mode string) (uint64, error) {
	switch mode {
	case "MapModel":
		mm, err := MapModel(path)
		if err != nil {
			return 0, err
		}
		sum := checksum(mm.Tensors)
		return sum, mm.Close()
	case "ReadModel":
		m, err := ReadModel(path)
		if err != nil {
			return 0, err
		}
		return checksum(m.Tensors), nil
	}
	return 0, fmt.Errorf("unknown load mode %q", mode)
}

// Environment of the child process TestLoadModelChild.
const (
	envLoadPath = "STRATA_LOAD_CHILD_PATH"
	envLoadMode = "STRATA_LOAD_CHILD_MODE"
)

// TestLoadModelChild is the child process of BenchmarkLoadModel: with
// envLoadPath set it loads that file once (loadOnce) and prints its
// checksum and peak RSS (VmHWM). Without it, it is skipped.
func TestLoadModelChild(t *testing.T) {
	path := os.Getenv(envLoadPath)
	if path == "" {
		t.Skip("the child process of BenchmarkLoadModel")
	}
	sum, err := loadOnce(path, os.Getenv(envLoadMode))
	if err != nil {
		t.Fatal(err)
	}
	hwm, err := peakRSS()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("load-child checksum %d peak-rss %d\n", sum, hwm)
}

// peakRSS returns the process's peak resident set size in bytes, VmHWM of
// /proc/self/status: anonymous memory and the file pages mapped in.
func peakRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}

// childPeakRSS runs TestLoadModelChild on path in a new process of this
// test binary and returns its checksum and peak RSS.
func childPeakRSS(path, mode string) (sum uint64, rss int64, err error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadModelChild$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), envLoadPath+"="+path, envLoadMode+"="+mode, "GOMAXPROCS=2")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("load child: %w\n%s", err, out.String())
	}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "load-child checksum %d peak-rss %d", &sum, &rss); err == nil {
			return sum, rss, nil
		}
	}
	return 0, 0, fmt.Errorf("load child printed no result:\n%s", out.String())
}

// BenchmarkLoadModel reports, for each reader, GB/s of file for open +
// validate + one checksum pass (warm page cache), and peak-RSS/file: the
// peak RSS of a fresh process doing one such load over the file size
// (the target: >= 2 GB/s and <= 1.2, so that a checkpoint loads at disk
// speed without a second copy in memory). Skipped with -short: it writes
// a 1 GiB file.
func BenchmarkLoadModel(b *testing.B) {
	if testing.Short() {
		b.Skip("writes a 1 GiB model file")
	}
	if runtime.GOOS != "linux" {
		b.Skip("peak RSS is read from /proc/self/status")
	}
	path := filepath.Join(b.TempDir(), "big.arrow")
	if err := writeBigModel(path); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	debug.FreeOSMemory()
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	size := st.Size()
	want, err := loadOnce(path, "ReadModel") // also brings the file into the page cache
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range loadModes {
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				sum, err := loadOnce(path, mode)
				if err != nil {
					b.Fatal(err)
				}
				if sum != want {
					b.Fatalf("checksum %d, want %d", sum, want)
				}
			}
			b.ReportMetric(float64(size)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
			sum, rss, err := childPeakRSS(path, mode)
			if err != nil {
				b.Fatal(err)
			}
			if sum != want {
				b.Fatalf("child checksum %d, want %d", sum, want)
			}
			b.ReportMetric(float64(rss)/float64(size), "peakRSS/file")
			b.ReportMetric(float64(size)/(1<<30), "GiB")
		})
	}
}
