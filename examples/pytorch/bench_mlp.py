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

    torch config: version 1.13.1 openblas_core Cooperlake blas_threads 2 aten AVX2 threads 2 ...
    torch mlp 64-512-512-10 samples/s 44600.0 gemm_bound 101000.0 efficiency 0.440 gemm_gflops 186.2 step_mflop 222.0

where efficiency is the GEMM time of a step over the step time (fastest
rounds of each, see bench).

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
import math
import os
import time

import torch


def blas_info():
    """Returns (core, threads) of the OpenBLAS PyTorch's GEMMs run on.

    torch 1.13 from Debian calls sgemm_ of the system BLAS, OpenBLAS; the
    library torch loaded is the one ctypes opens by its soname.
    """
    for name in ("libopenblas.so.0", ctypes.util.find_library("openblas")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode(), lib.openblas_get_num_threads()
        except (OSError, AttributeError):
            continue
    return "not OpenBLAS", 0


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


def gemm_operands(gemms):
    """Operands of each GEMM, transposes as views (as nn.Linear's are),
    and a preallocated output."""
    ops = []
    for m, n, k, ta, tb in gemms:
        a = torch.randn(k, m).t() if ta else torch.randn(m, k)
        b = torch.randn(n, k).t() if tb else torch.randn(k, n)
        ops.append((a, b, torch.empty(m, n)))
    return ops


def gemm_pass_seconds(ops, seconds):
    """The seconds of one pass over every GEMM of a step, back to back as
    in the step (no allocation), averaged over the passes that fit."""
    passes, start = 0, time.perf_counter()
    while True:
        for a, b, c in ops:
            torch.mm(a, b, out=c)
        passes += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and passes >= 5:
            return elapsed / passes


def bench(width, batch, seconds, rounds):
    """Returns the mean samples/s of the training step, its GEMM bound
    (samples/s), its efficiency, the GEMM rate (GFLOP/s) and the MFLOP of
    a step's GEMMs.

    Step timing and GEMM timing alternate over rounds, so that both see
    the same machine load; the steps get two thirds of the time. The
    bound and the efficiency compare the least disturbed round of each:
    the fastest GEMM pass, and the fastest round of steps."""
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

    gemms = linear_gemms(batch, widths)
    ops = gemm_operands(gemms)
    flop = sum(2 * m * n * k for m, n, k, _, _ in gemms)
    for _ in range(20):  # warm-up: allocator, thread pools, optimiser state
        step()
    gemm_pass_seconds(ops, 0.05)
    steps, step_time = 0, 0.0
    best_step, best_gemm = math.inf, math.inf
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
        best_step = min(best_step, elapsed / n)
        best_gemm = min(best_gemm, gemm_pass_seconds(ops, seconds / (3 * rounds)))
    return (steps * batch / step_time, batch / best_gemm, best_gemm / best_step,
            flop / best_gemm / 1e9, flop / 1e6)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seconds", type=float, default=4.5, help="per width, steps and GEMMs together")
    p.add_argument("--rounds", type=int, default=5, help="alternations of step and GEMM timing")
    p.add_argument("--widths", default="512,2048")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    core, blas_threads = blas_info()
    print(f"torch config: version {torch.__version__} openblas_core {core} blas_threads {blas_threads} "
          f"aten {aten_capability()} threads {torch.get_num_threads()} "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '-')} "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '-')} "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')}", flush=True)
    for w in (int(v) for v in a.widths.split(",")):
        rate, bound, eff, gflops, mflop = bench(w, a.batch, a.seconds, a.rounds)
        print(f"torch mlp 64-{w}-{w}-10 samples/s {rate:.1f} gemm_bound {bound:.1f} "
              f"efficiency {eff:.3f} gemm_gflops {gflops:.1f} step_mflop {mflop:.1f}", flush=True)


if __name__ == "__main__":
    main()
