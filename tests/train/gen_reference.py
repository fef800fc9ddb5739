#!/usr/bin/python3
"""Reference trajectories of torch.optim for tests/unit/test_train.c.

Run with Debian's Python and torch 1.13 (the versions the committed files came from):
    /usr/bin/python3 tests/train/gen_reference.py
It writes tests/train/ref/*.npy, all float32 except the labels (int32):
  <model>_x.npy, <model>_y.npy     inputs of each call, stacked: [calls, ...]
  <model>_init_<param>.npy         the initial params (the test loads these into the
                                   evaluator and the compiled instance: the module's own
                                   initializers are not involved, so the fixture does not
                                   depend on the compiler's random number generator)
  <model>_<config>.npy             [calls, 1 + numel of all params]: per call, F's value
                                   (computed before the update), then every param after the
                                   call, flattened in declaration order
The models and configurations mirror tests/train/{mlp,linreg}.tdsl export by export.
Accumulation (accumulate=N) is computed as docs/training.md defines it: each call adds
grad / N to an accumulator; every Nth call sets .grad to the accumulator, steps and zeroes it.
"""
import os

import numpy as np
import torch
import torch.nn.functional as F

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "ref")
CALLS = 10  # inputs for this many calls; each config uses the first `calls` of them

# name -> (optimizer, options, params trained (None: all), accumulate, calls); both models
CONFIGS = {
    "sgd_plain": ("sgd", dict(lr=0.1), None, 1, 5),
    "sgd_momentum": ("sgd", dict(lr=0.1, momentum=0.9), None, 1, 5),
    "sgd_nesterov": ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True), None, 1, 5),
    "sgd_wd": ("sgd", dict(lr=0.1, momentum=0.5, weight_decay=0.05), None, 1, 5),
    "sgd_some": ("sgd", dict(lr=0.2), "some", 1, 5),
    "adam_plain": ("adam", dict(lr=0.01), None, 1, 5),
    "adam_wd": ("adam", dict(lr=0.01, weight_decay=0.1), None, 1, 5),
    "adamw_plain": ("adamw", dict(lr=0.01, weight_decay=0.1), None, 1, 5),
    "adamw_betas": ("adamw", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6), None, 1, 5),
    "sgd_accum": ("sgd", dict(lr=0.1, momentum=0.9), None, 2, 10),
    "adam_accum": ("adam", dict(lr=0.01), None, 3, 9),
}


def mlp_model(rng):
    x = rng.standard_normal((CALLS, 8, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=(CALLS, 8)).astype(np.int32)
    init = {
        "W1": (0.5 * rng.standard_normal((4, 6))).astype(np.float32),
        "b1": (0.1 * rng.standard_normal(6)).astype(np.float32),
        "W2": (0.5 * rng.standard_normal((6, 3))).astype(np.float32),
        "b2": (0.1 * rng.standard_normal(3)).astype(np.float32),
    }

    def loss(p, xb, yb):
        h = torch.tanh(xb @ p["W1"] + p["b1"])
        return F.cross_entropy(h @ p["W2"] + p["b2"], yb.long())

    return x, y, init, loss, ["W2", "b2"]


def linreg_model(rng):
    x = rng.standard_normal((CALLS, 16, 3)).astype(np.float32)
    w_true = np.array([[1.5], [-2.0], [0.5]], dtype=np.float32)
    y = (x @ w_true + 0.3 + 0.05 * rng.standard_normal((CALLS, 16, 1))).astype(np.float32)
    init = {
        "W": (0.5 * rng.standard_normal((3, 1))).astype(np.float32),
        "b": np.array([0.1], dtype=np.float32),
    }

    def loss(p, xb, yb):
        return F.mse_loss(xb @ p["W"] + p["b"], yb)

    return x, y, init, loss, ["b"]


def trajectory(x, y, init, loss_fn, some, cfg):
    opt_name, opts, which, accumulate, calls = cfg
    params = {k: torch.tensor(v, requires_grad=True) for k, v in init.items()}
    trained = [params[k] for k in (some if which == "some" else init.keys())]
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[opt_name]
    opt = cls(trained, foreach=False, **opts)
    acc = [torch.zeros_like(p) for p in trained]
    rows = []
    for i in range(calls):
        loss = loss_fn(params, torch.from_numpy(x[i]), torch.from_numpy(y[i]))
        grads = torch.autograd.grad(loss, trained)
        for a, g in zip(acc, grads):
            a += g / accumulate
        if (i + 1) % accumulate == 0:
            for p, a in zip(trained, acc):
                p.grad = a.clone()
            opt.step()
            for a in acc:
                a.zero_()
        with torch.no_grad():
            flat = [p.detach().numpy().ravel() for p in params.values()]
        rows.append(np.concatenate([[loss.item()]] + flat).astype(np.float32))
    return np.stack(rows)


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, make in (("mlp", mlp_model), ("linreg", linreg_model)):
        rng = np.random.default_rng(20240607 if name == "mlp" else 7)
        x, y, init, loss_fn, some = make(rng)
        np.save(os.path.join(OUT, f"{name}_x.npy"), x)
        np.save(os.path.join(OUT, f"{name}_y.npy"), y)
        for k, v in init.items():
            np.save(os.path.join(OUT, f"{name}_init_{k}.npy"), v)
        for cname, cfg in CONFIGS.items():
            np.save(os.path.join(OUT, f"{name}_{cname}.npy"), trajectory(x, y, init, loss_fn, some, cfg))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
