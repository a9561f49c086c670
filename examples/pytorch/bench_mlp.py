#!/usr/bin/env python3
"""PyTorch reference for strata's finetune benchmark.

Trains the same MLPs as compute's BenchmarkTrainStep, with the same
hyper-parameters: inputs 64 -> h -> ReLU -> h -> ReLU -> 10, softmax
cross-entropy, batch 128, AdamW (lr 1e-3, betas 0.9/0.999, eps 1e-8,
weight decay 0.01), gradient clipping at global norm 1, float32, a fixed
random batch, 2 threads.

Beside each training rate it measures PyTorch's own GEMM rate at the
shapes of the step, in the same process and interleaved with the steps
(so both see the same machine load), and derives the GEMM-bound rate: the
samples/s the step would reach if it did nothing but its GEMMs at that
rate. A step that runs far below its GEMM bound is spending its time
elsewhere (page faults when glibc returns the large temporaries to the
kernel every step, spinning threads): the reference is mistuned, and
.ci/benchperf.go then refuses to print a ratio against it. It prints the
kernel and threads first, then one line per width:

    torch config: version 1.13.1 blas openblas core Cooperlake blas_threads 2 aten AVX2 threads 2 ...
    torch mlp 64-512-512-10 samples/s 44600.0 gemm_bound 101000.0 efficiency 0.44 gemm_gflops 186.2 step_mflop 222.3

Run it as `make bench` does, tuned the way PyTorch's users tune it on this
machine: the AVX-512 BLAS kernels (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
unset in this command alone), passive OpenMP waiting, and glibc keeping
the large tensors out of mmap and its heap untrimmed:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_WAIT_POLICY=PASSIVE \
      GLIBC_TUNABLES=glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=4294967296 \
      python3 examples/pytorch/bench_mlp.py --threads 2
"""
import argparse
import ctypes
import ctypes.util
import os
import time

import torch


def blas_info():
    """Returns (name, core, threads) of the BLAS PyTorch's GEMMs run on.

    torch 1.13 from Debian calls sgemm_ of the system BLAS, which is
    OpenBLAS when its openblas_get_corename is found in the process; the
    library already loaded by torch is the one ctypes opens by soname.
    """
    for name in ("libopenblas.so.0", ctypes.util.find_library("openblas")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return "openblas", lib.openblas_get_corename().decode(), lib.openblas_get_num_threads()
        except (OSError, AttributeError):
            continue
    cfg = torch.__config__.show()
    if "MKL" in cfg and "MKL not found" not in torch.__config__.parallel_info():
        return "mkl", "-", torch.get_num_threads()
    return "unknown", "-", 0


def aten_capability():
    """The CPU capability ATen's vectorised kernels dispatch to (AVX2, AVX512, ...)."""
    if hasattr(torch.backends, "cpu") and hasattr(torch.backends.cpu, "get_cpu_capability"):
        return torch.backends.cpu.get_cpu_capability()
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage:" in line:
            return line.split(":", 1)[1].strip()
    return "unknown"


def linear_gemms(batch, widths):
    """The GEMMs of one training step of an MLP with these widths, as
    (m, n, k, transposed A, transposed B) of C = op(A) op(B), the way
    nn.Linear calls them: forward Y = X W^T, weight gradient dW = dY^T X,
    and input gradient dX = dY W for every layer but the first (the input
    does not require a gradient)."""
    gemms = []
    for i, (fan_in, fan_out) in enumerate(zip(widths, widths[1:])):
        gemms.append((batch, fan_out, fan_in, False, True))   # Y = X W^T
        gemms.append((fan_out, fan_in, batch, True, False))   # dW = dY^T X
        if i > 0:
            gemms.append((batch, fan_in, fan_out, False, False))  # dX = dY W
    return gemms


def gemm_seconds(gemms, seconds):
    """Times each GEMM (preallocated output, no allocation) and returns
    the seconds of one pass over all of them."""
    total = 0.0
    per = seconds / len(gemms)
    for m, n, k, ta, tb in gemms:
        a = torch.randn(k, m).t() if ta else torch.randn(m, k)
        b = torch.randn(n, k).t() if tb else torch.randn(k, n)
        c = torch.empty(m, n)
        for _ in range(3):
            torch.mm(a, b, out=c)
        reps, start = 0, time.perf_counter()
        while True:
            torch.mm(a, b, out=c)
            reps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= per and reps >= 5:
                break
        total += elapsed / reps
    return total


def bench(width, batch, seconds, rounds):
    torch.manual_seed(1)
    widths = [64, width, width, 10]
    model = torch.nn.Sequential(
        torch.nn.Linear(64, width), torch.nn.ReLU(),
        torch.nn.Linear(width, width), torch.nn.ReLU(),
        torch.nn.Linear(width, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch, 64)
    y = torch.arange(batch) % 10

    def step():
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(20):  # warm-up: allocator, thread pools, optimiser state
        step()
    gemms = linear_gemms(batch, widths)
    flop = sum(2 * m * n * k for m, n, k, _, _ in gemms)
    # Interleave step timing with GEMM timing, so that both see the same
    # machine load; the step gets two thirds of the time.
    steps, step_time, gemm_time = 0, 0.0, 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        n = 0
        while True:
            step()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= 2 * seconds / (3 * rounds) and n >= 3:
                break
        steps += n
        step_time += elapsed
        gemm_time += gemm_seconds(gemms, seconds / (3 * rounds))
    gemm_time /= rounds
    rate = steps * batch / step_time
    bound = batch / gemm_time
    return rate, bound, flop / gemm_time / 1e9, flop / 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seconds", type=float, default=4.5, help="per width, steps and GEMMs together")
    p.add_argument("--rounds", type=int, default=3, help="alternations of step and GEMM timing")
    p.add_argument("--widths", default="512,2048")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    blas, core, blas_threads = blas_info()
    print(f"torch config: version {torch.__version__} blas {blas} core {core} blas_threads {blas_threads} "
          f"aten {aten_capability()} threads {torch.get_num_threads()} "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '-')} "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '-')} "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')}", flush=True)
    for w in (int(v) for v in a.widths.split(",")):
        rate, bound, gflops, mflop = bench(w, a.batch, a.seconds, a.rounds)
        print(f"torch mlp 64-{w}-{w}-10 samples/s {rate:.1f} gemm_bound {bound:.1f} "
              f"efficiency {rate / bound:.3f} gemm_gflops {gflops:.1f} step_mflop {mflop:.1f}", flush=True)


if __name__ == "__main__":
    main()
