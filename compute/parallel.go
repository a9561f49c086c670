package compute

import (
	"runtime"
	"sync"
)

// serialBLAS counts the regions of code that call BLAS from several
// goroutines at once. A multi-threaded BLAS (OpenBLAS) would put two of
// its threads on every core there, so while at least one such region is
// open every BLAS call is limited to one thread (SetBLASThreads, which is
// process-wide), and the previous setting is restored when the last one
// closes. Regions nest and may open concurrently on different goroutines.
var serialBLAS struct {
	sync.Mutex
	open  int
	saved int
}

// enterSerialBLAS opens a serial-BLAS region; exitSerialBLAS closes it.
func enterSerialBLAS() {
	serialBLAS.Lock()
	defer serialBLAS.Unlock()
	if serialBLAS.open == 0 {
		serialBLAS.saved = BLASThreads()
		if serialBLAS.saved > 1 {
			SetBLASThreads(1)
		}
	}
	serialBLAS.open++
}

func exitSerialBLAS() {
	serialBLAS.Lock()
	defer serialBLAS.Unlock()
	serialBLAS.open--
	if serialBLAS.open == 0 && serialBLAS.saved > 1 {
		SetBLASThreads(serialBLAS.saved)
	}
}

// parallelMinWork is the least work (in flops, or element moves) worth
// splitting over goroutines: below it the start-up of a goroutine
// (about a microsecond) is more than a share of the work.
const parallelMinWork = 1 << 20

// workers returns the number of goroutines to split n independent items
// of total cost work over: 1 when ws is serial (its caller already runs
// one goroutine per core, as the Trainer's shards do) or the work is below
// parallelMinWork, else min(n, GOMAXPROCS).
func (w *Workspace[T]) workers(n int, work float64) int {
	if (w != nil && w.serial) || work < parallelMinWork {
		return 1
	}
	return max(1, min(n, runtime.GOMAXPROCS(0)))
}

// parallelFor runs body over [0, n) split into k contiguous ranges, each
// on its own goroutine (the first on the caller's), and re-raises on the
// caller the first panic of a range. With blas, the BLAS calls of the
// bodies run single-threaded (serialBLAS). Starting the goroutines
// allocates: callers with k == 1 call their body directly instead.
//
// The bodies of different ranges must write disjoint memory, and
// body(lo, hi) must compute for each index what it would compute in any
// other range, so that the result does not depend on k.
func parallelFor(k, n int, blas bool, body func(lo, hi int)) {
	if blas {
		enterSerialBLAS()
		defer exitSerialBLAS()
	}
	var wg sync.WaitGroup
	var panicked any
	var once sync.Once
	run := func(lo, hi int) {
		defer func() {
			if r := recover(); r != nil {
				once.Do(func() { panicked = r })
			}
		}()
		body(lo, hi)
	}
	for c := 1; c < k; c++ {
		wg.Go(func() { run(c*n/k, (c+1)*n/k) })
	}
	run(0, n/k)
	wg.Wait()
	if panicked != nil {
		panic(panicked)
	}
}

// SerialBLAS limits every BLAS call of the process to one thread until
// the returned function is called (once; later calls do nothing): for a
// caller that runs BLAS on one goroutine per core, where a multi-threaded
// BLAS would put several threads on every core that wait for each other.
// Regions nest and may be open on several goroutines at once; the thread
// count comes back when the last one closes. A no-op for gonum, whose
// calls are single-threaded. OpenBLAS's bits can depend on its thread
// count (a 256 x 1024 x 784 product differs in the last bit of most
// entries between one thread and two), so work done inside a region also
// gives the same bits on machines with any number of cores.
func SerialBLAS() (done func()) {
	enterSerialBLAS()
	return sync.OnceFunc(exitSerialBLAS)
}
