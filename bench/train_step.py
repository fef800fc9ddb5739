#!/usr/bin/env python3
"""train_step.py: the step of bench/train_step.c in PyTorch eager, for comparison.

relu MLP (params stored [in, out], as in the .tdsl), mean cross_entropy, batch 64,
torch.optim.SGD(lr=0.01): zero_grad, forward, backward, step. Models 784-256-10 and
64-64-10, at 1 and 2 threads (torch.set_num_threads). Per thread count: rounds of warm-up
steps and then steps timed one by one; the median in us.

usage: train_step.py [--rounds N] [--steps N] [--threads 1,2]
Prints `RESULT <model> <threads> <us> <loss>` lines for train_step.sh."""
import argparse
import math
import statistics
import sys
import time

try:
    import torch
except ImportError:
    print("train_step.py: torch is not installed (pip install torch)", file=sys.stderr)
    sys.exit(1)

BATCH = 64
WARM = 20
MODELS = [(784, 256, 10), (64, 64, 10)]


def make(inp, hid, c):
    g = torch.Generator().manual_seed(1)
    def u(shape, bound):
        return ((torch.rand(shape, generator=g) * 2 - 1) * bound).requires_grad_()
    params = [u((inp, hid), 1 / math.sqrt(inp)), u((hid,), 1 / math.sqrt(inp)),
              u((hid, c), 1 / math.sqrt(hid)), u((c,), 1 / math.sqrt(hid))]
    # the same inputs as train_step.c: pixel-like values in [0, 1], labels i*7 mod c
    q = torch.arange(BATCH * inp, dtype=torch.int64)
    x = ((q * 7919 % 1009).float() / 1009.0).reshape(BATCH, inp)
    y = (torch.arange(BATCH) * 7 % c).long()
    return params, x, y


def step(params, opt, x, y):
    W1, b1, W2, b2 = params
    opt.zero_grad()
    h = torch.relu(x @ W1 + b1)
    loss = torch.nn.functional.cross_entropy(h @ W2 + b2, y)
    loss.backward()
    opt.step()
    return loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", default="1,2")
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    print(f"train_step.py: PyTorch {torch.__version__} eager, {torch.backends.cpu.get_cpu_capability()}")
    print(f"median of {a.rounds * a.steps} steps ({a.rounds} rounds x {a.steps}, after {WARM} warm-up steps per round), in us")
    for inp, hid, c in MODELS:
        label = f"{inp}-{hid}-{c}"
        for t in threads:
            torch.set_num_threads(t)
            params, x, y = make(inp, hid, c)
            opt = torch.optim.SGD(params, lr=0.01)
            loss0 = step(params, opt, x, y).item()
            times = []
            for _ in range(a.rounds):
                for _ in range(WARM):
                    step(params, opt, x, y)
                for _ in range(a.steps):
                    t0 = time.perf_counter_ns()
                    step(params, opt, x, y)
                    times.append(time.perf_counter_ns() - t0)
            us = statistics.median(times) / 1e3
            print(f"{label:<14} {t:3d} {us:10.1f}")
            print(f"RESULT {label} {t} {us:.2f} {loss0:.6f}", flush=True)


if __name__ == "__main__":
    main()
