#!/usr/bin/env python3
"""PyTorch reference for strata's finetune benchmark (`make bench`).

Trains the same MLPs as compute's BenchmarkTrainStep, with the same
hyper-parameters: inputs 64 -> h -> ReLU -> h -> ReLU -> 10, softmax
cross-entropy, batch 128, AdamW (lr 1e-3, betas 0.9/0.999, eps 1e-8,
weight decay 0.01), gradient clipping at global norm 1, float32, a fixed
random batch, 2 threads. Prints one line per width:

    torch mlp 64-512-512-10 samples/s 44600.0

Run it the way `make bench` does, tuned fairly: the AVX-512 BLAS kernels
(OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset in this command alone),
passive OpenMP waiting, and glibc keeping the large tensors out of mmap:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_WAIT_POLICY=PASSIVE \
      GLIBC_TUNABLES=glibc.malloc.mmap_threshold=268435456 \
      python3 examples/pytorch/bench_mlp.py --threads 2
"""
import argparse
import time

import torch


def bench(width, batch, threads, seconds):
    torch.manual_seed(1)
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

    for _ in range(20):  # warm-up: allocator, OpenMP pool, optimiser state
        step()
    steps, start = 0, time.perf_counter()
    while True:
        step()
        steps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and steps >= 10:
            return steps * batch / elapsed


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--widths", default="512,2048")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for w in (int(v) for v in a.widths.split(",")):
        rate = bench(w, a.batch, a.threads, a.seconds)
        print(f"torch mlp 64-{w}-{w}-10 samples/s {rate:.1f}", flush=True)


if __name__ == "__main__":
    main()
