#!/usr/bin/env python3
"""Reference data for tests/programs/*.tdsl, computed with PyTorch.

For every exported fn listed below this script makes deterministic inputs, computes
the expected outputs with PyTorch code that mirrors the .tdsl program line by line,
and writes (NumPy .npy, C order, little-endian):

    data/<prog>.<fn>.in.<arg>.npy    one per argument of the fn, named as in the .tdsl
    data/<prog>.<fn>.out.<k>.npy     one per result, k = 0, 1, ... in return order

tests/unit/test_programs.c (pure C: CI has no Python) runs each fn through the
tdsl front end and the reference evaluator and compares with these files; the
output dtype must match exactly, so the files also pin PyTorch's type promotion.

Run from anywhere, with a Python that has torch and numpy (Debian: apt-get install
python3-torch; made with torch 1.13 and numpy 1.24):

    /usr/bin/python3 tests/programs/gen_reference.py

The script first deletes data/*.npy, so stale files cannot linger. Inputs come from
numpy's legacy RandomState seeded by a CRC-32 of "<prog>.<fn>", so each fn's data
depends on nothing else and reruns give byte-identical files. Integer-valued floats
are avoided where a tie or a rounding boundary would make the result fragile.
Where PyTorch 1.13's CPU kernels lack f16 (matmul, softmax, reductions), the
reference computes in f32 and rounds to f16, which is what an f16 kernel that
accumulates in f32 gives; the C test's f16 tolerance covers the difference.
"""
import os
import sys
import zlib

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")

CASES = []  # (prog, fn, make_inputs(rng) -> dict name->ndarray, compute(**tensors))


def case(prog, fn, make):
    def deco(compute):
        CASES.append((prog, fn, make, compute))
        return compute
    return deco


class Rng:
    """Input makers over one RandomState."""

    def __init__(self, seed):
        self.r = np.random.RandomState(seed)

    def normal(self, *shape, scale=1.0, dtype=np.float32):
        return (self.r.standard_normal(shape) * scale).astype(dtype)

    def uniform(self, lo, hi, *shape, dtype=np.float32):
        return self.r.uniform(lo, hi, shape).astype(dtype)

    def ints(self, lo, hi, *shape, dtype=np.int64):   # [lo, hi)
        return self.r.randint(lo, hi, shape).astype(dtype)

    def nonzero_ints(self, lo, hi, *shape, dtype=np.int32):
        v = self.r.randint(lo, hi, shape)
        v[v == 0] = 1
        return v.astype(dtype)

    def bools(self, *shape):
        return self.r.rand(*shape) < 0.5

    def scalar(self, dtype=np.float32, scale=1.0):
        return np.array(self.r.standard_normal() * scale, dtype=dtype)


f16, f32, f64, i32, i64 = torch.float16, torch.float32, torch.float64, torch.int32, torch.int64
F = torch.nn.functional


def via_f32(fn, *xs):
    """fn computed in f32 on f16 inputs, rounded back to f16 (PyTorch 1.13 CPU lacks
    f16 kernels for these ops; GPU kernels accumulate in f32 the same way)."""
    return fn(*[x.float() for x in xs]).half()


# ---------------------------------------------------------------- broadcast.tdsl
@case("broadcast", "bcast3", lambda r: dict(a=r.normal(3, 1, 4), b=r.normal(2, 1), s=r.scalar()))
def _(a, b, s):
    return a + b * s


@case("broadcast", "rank0", lambda r: dict(x=r.normal(2, 3), s=r.scalar()))
def _(x, s):
    return x - s, s / (x * x + 1), torch.maximum(x, s), s * s + 1


@case("broadcast", "rows_cols", lambda r: dict(x=r.normal(4, 3), r=r.normal(3), c=r.normal(4, 1)))
def _(x, r, c):
    return x * r + c, (r - c) * 0.5


@case("broadcast", "ones_dims", lambda r: dict(a=r.normal(1, 3, 1), b=r.normal(2, 1, 5)))
def _(a, b):
    return a * b - torch.minimum(a, b)


# ---------------------------------------------------------------- unary_math.tdsl
@case("unary_math", "math", lambda r: dict(x=r.normal(3, 4), p=r.uniform(0.05, 4, 3, 4)))
def _(x, p):
    return -x, x.abs(), x.sign(), x.exp(), p.log(), p.log1p(), p.sqrt()


@case("unary_math", "math2", lambda r: dict(x=r.normal(3, 4, scale=2), p=r.uniform(0.05, 4, 3, 4)))
def _(x, p):
    return p.rsqrt(), x.sin(), x.cos(), x.tanh(), x.sigmoid(), x.relu()


@case("unary_math", "methods", lambda r: dict(x=np.array([-2.5, -0.0, 0.0, 0.75, 3.0], np.float32)))
def _(x):
    return x.exp().log1p(), -x.abs(), x.tanh().sign()


@case("unary_math", "ints", lambda r: dict(n=np.array([-7, -1, 0, 1, 5, -2147483647], np.int32)))
def _(n):
    return -n, n.abs(), n.sign(), n.relu()


@case("unary_math", "int_to_float", lambda r: dict(n=np.array([0, 1, 3, 10], np.int64)))
def _(n):
    return n.exp(), n.sqrt()


# ---------------------------------------------------------------- activations.tdsl
def act_input(r):
    x = r.normal(2, 5, scale=3)
    x[1, 3] = 25.0     # above softplus's threshold of 20
    x[1, 4] = -30.0
    return dict(x=x)


@case("activations", "gelus", act_input)
def _(x):
    return F.gelu(x), F.gelu(x, approximate="tanh"), F.gelu(x, approximate="none")


@case("activations", "smooth", act_input)
def _(x):
    return F.silu(x), F.silu(x), F.softplus(x)


@case("activations", "leaky", act_input)
def _(x):
    return F.leaky_relu(x), F.leaky_relu(x, 0.2), F.leaky_relu(x, negative_slope=0.5), F.leaky_relu(x, 0.3)


@case("activations", "clamps", act_input)
def _(x):
    return x.clamp(-0.5, 0.5), x.clamp(min=0), x.clamp(max=1.25), x.clamp(-1, 2), x.clamp(1, -1)


@case("activations", "clamp_int", lambda r: dict(n=np.array([-5, -2, 0, 1, 3, 9], np.int32)))
def _(n):
    return n.clamp(-2, 3), n.clamp(0.5, 2.5)


# ---------------------------------------------------------------- arith.tdsl
@case("arith", "basic", lambda r: dict(a=r.normal(2, 3), b=r.uniform(0.5, 2, 2, 3) * np.where(r.bools(2, 3), 1, -1).astype(np.float32)))
def _(a, b):
    return a + b, a - b, a * b, a / b


def rem_inputs(r):
    return dict(a=np.array([5.5, -5.5, 5.5, -5.5, 0.25, -3.0, 7.0, -0.1], np.float32),
                b=np.array([2.0, 2.0, -2.0, -2.0, 3.0, 1.5, -2.5, 0.75], np.float32),
                n=np.array([7, -7, 7, -7, 0, 6, -1, 13], np.int32),
                m=np.array([3, 3, -3, -3, 5, -4, 4, -5], np.int32))


@case("arith", "remainders", rem_inputs)
def _(a, b, n, m):
    return a % b, n % m, n % 3, a % -1.5, 7.5 % b


@case("arith", "powers", lambda r: dict(x=r.uniform(0.1, 3, 6), p=r.uniform(-2, 2, 6), n=r.ints(-4, 5, 6, dtype=np.int32)))
def _(x, p, n):
    return x ** p, torch.pow(x, 2), n ** 2, 2 ** p, x ** 0.5, x ** 2 ** 0.5


@case("arith", "extremes", lambda r: dict(a=r.normal(2, 3), b=r.normal(2, 3), n=r.ints(-5, 5, 2, 3), m=r.ints(-5, 5, 3)))
def _(a, b, n, m):
    return torch.maximum(a, b), torch.minimum(a, b), torch.maximum(n, m), n.clamp(max=0), a.clamp(min=0.25)


@case("arith", "chain", lambda r: dict(x=r.normal(4), y=r.normal(4)))
def _(x, y):
    z = x * 2 - y / 4 + 1
    z = z + x * y
    z = z - 0.5
    return -z * z


# ---------------------------------------------------------------- compare_logic.tdsl
def cmp_inputs(r):
    a = r.normal(2, 4)
    b = r.normal(2, 4)
    b[0, :2] = a[0, :2]            # some equal pairs
    return dict(a=a, b=b)


@case("compare_logic", "compares", cmp_inputs)
def _(a, b):
    return a == b, a != b, a < b, a <= b, a > b, a >= b


@case("compare_logic", "logic", cmp_inputs)
def _(a, b):
    p, q = a > 0, b > 0
    return p & q, p | q, ~p, ~(p & ~q) | (a == b)


@case("compare_logic", "mixed", lambda r: dict(n=np.array([-2, 0, 1, 3, 4], np.int32),
                                               x=np.array([-2.0, 0.5, 1.0, 2.5, 9.0], np.float32),
                                               k=np.array([-2, 1, 1, 4, 4], np.int64)))
def _(n, x, k):
    return n < x, n == k, x >= 1, 2 > n


@case("compare_logic", "precedence", lambda r: dict(a=r.normal(6), b=r.normal(6)))
def _(a, b):
    return (a > 0) | ((b > 0) & (a < b))


# ---------------------------------------------------------------- where_mask.tdsl
@case("where_mask", "wheres", lambda r: dict(c=r.bools(3, 1), a=r.normal(3, 4), b=r.normal(4)))
def _(c, a, b):
    return torch.where(c, a, b), torch.where(a > 0, a, torch.tensor(0.0)), \
        torch.where(a > b, torch.tensor(1.5), torch.tensor(-2.5))


@case("where_mask", "promote_where", lambda r: dict(c=r.bools(5), n=r.ints(-9, 9, 5, dtype=np.int32), x=r.normal(5)))
def _(c, n, x):
    return torch.where(c, n.float(), x), torch.where(c, n, torch.tensor(7, dtype=i32))


@case("where_mask", "fills", lambda r: dict(x=r.normal(2, 4), m=r.bools(2, 4), n=r.ints(-9, 9, 2, 4, dtype=np.int32), row=r.bools(4)))
def _(x, m, n, row):
    return x.masked_fill(m, -1e9), n.masked_fill(m, 3), x.masked_fill(row, 0.0)


# ---------------------------------------------------------------- promotion.tdsl
@case("promotion", "int_float", lambda r: dict(n=r.ints(-9, 9, 4, dtype=np.int32), x=r.normal(4),
                                                h=r.normal(4, dtype=np.float16), d=r.normal(4, dtype=np.float64)))
def _(n, x, h, d):
    return n + x, h + x, x * d, n - d


@case("promotion", "bools", lambda r: dict(b=np.array([True, False, True, True]), n=r.ints(-9, 9, 4, dtype=np.int32),
                                            x=r.normal(4, dtype=np.float16)))
def _(b, n, x):
    return b + n, b + 1, b * x, b + 0.5, n * b


@case("promotion", "weak", lambda r: dict(n=r.ints(-9, 9, 4, dtype=np.int32), x=r.normal(4, dtype=np.float16)))
def _(n, x):
    return n * 2, n + 1.5, x * 2, x * 2.5, n / 2


@case("promotion", "divide", lambda r: dict(n=r.nonzero_ints(-9, 9, 4), m=r.nonzero_ints(-5, 5, 4),
                                             k=r.nonzero_ints(-9, 9, 4, dtype=np.int64)))
def _(n, m, k):
    return n / m, k / n, 1 / k


@case("promotion", "zero_dim", lambda r: dict(x=r.normal(3), s64=r.scalar(np.float64), n=r.ints(-9, 9, 3, dtype=np.int32),
                                               sf=r.scalar(), si=np.array(3, np.int64), h=r.normal(3, dtype=np.float16)))
def _(x, s64, n, sf, si, h):
    return x + s64, n + sf, n + si, h * s64, h * x + s64


@case("promotion", "widen", lambda r: dict(n=r.ints(-9, 9, 3, dtype=np.int32), k=r.ints(-9, 9, 3),
                                            h=r.normal(3, dtype=np.float16), x=r.normal(3)))
def _(n, k, h, x):
    b = h.to(torch.bfloat16)
    return n + k, b + h, b * x


# ---------------------------------------------------------------- matmul_forms.tdsl
@case("matmul_forms", "vectors", lambda r: dict(u=r.normal(4), v=r.normal(4), m=r.normal(4, 3), w=r.normal(3, 4)))
def _(u, v, m, w):
    return u @ v, u @ m, w @ v


@case("matmul_forms", "plain", lambda r: dict(a=r.normal(3, 4), b=r.normal(4, 5)))
def _(a, b):
    return a @ b, b.T @ a.T, a @ a.transpose(0, 1)


@case("matmul_forms", "batched", lambda r: dict(a=r.normal(2, 3, 4), b=r.normal(4, 5), c=r.normal(2, 4, 2)))
def _(a, b, c):
    return a @ b, a @ c, a.transpose(1, 2) @ a[0]


@case("matmul_forms", "broadcast_batch", lambda r: dict(a=r.normal(2, 1, 3, 4), b=r.normal(5, 4, 2), v=r.normal(4)))
def _(a, b, v):
    return a @ b, a @ v, v @ b


@case("matmul_forms", "ints", lambda r: dict(n=r.ints(-5, 5, 2, 3, dtype=np.int32), m=r.ints(-5, 5, 3, 2, dtype=np.int32),
                                              x=r.normal(3, 2)))
def _(n, m, x):
    # torch 1.13 has no CPU matmul for int32: int64 gives the same (small) values
    return (n.long() @ m.long()).int(), n.float() @ x


@case("matmul_forms", "strided", lambda r: dict(a=r.normal(4, 6), b=r.normal(3, 3, 2)))
def _(a, b):
    return a[::2, ::2] @ b.permute(2, 0, 1)[0]


# ---------------------------------------------------------------- views.tdsl
def arange_f(*shape):
    return (np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) * 0.5 - 3)


@case("views", "reshapes", lambda r: dict(x=arange_f(3, 4)))
def _(x):
    return x.view(2, 6), x.T.contiguous(), x.view(-1), x.T.reshape(6, 2), x.reshape(2, -1, 3)


@case("views", "perms", lambda r: dict(x=arange_f(2, 3, 4)))
def _(x):
    return x.permute(2, 0, 1), x.transpose(-1, 1), x.permute(2, 1, 0), x.transpose(0, 1), x.permute(1, 2, 0).flatten()


@case("views", "squeezes", lambda r: dict(x=r.normal(2, 1, 3, 1)))
def _(x):
    return x.squeeze(), x.squeeze(1), x.squeeze(0), x.unsqueeze(0), x.unsqueeze(-1)


@case("views", "expands", lambda r: dict(r=r.normal(3), c=r.normal(2, 1)))
def _(r, c):
    return r.expand(4, 3), c.expand(-1, 5), torch.broadcast_to(r, (2, 2, 3)), (c.expand(2, 3) + r).contiguous()


@case("views", "flattens", lambda r: dict(x=arange_f(2, 3, 4)))
def _(x):
    return x.flatten(), x.flatten(1), x.flatten(0, 1), x.permute(0, 2, 1).flatten(0, 1)[:, ::2][:, :2]


@case("views", "identity_like", lambda r: dict(x=r.normal(2, 3)))
def _(x):
    return x.clone(), x.T.detach(), x.detach() * 2


@case("views", "view_chain", lambda r: dict(x=arange_f(4, 6)))
def _(x):
    s = x[1:, ::2]
    return s.view(3, 3, 1)[:, 1:, :], x.T.reshape(2, 12)[:, ::2].view(2, 3, 2)


# ---------------------------------------------------------------- indexing.tdsl
@case("indexing", "basic", lambda r: dict(x=arange_f(4, 5)))
def _(x):
    return x[1], x[1:3], x[::2], x[:, -1], x[..., 0], x[-2]


@case("indexing", "mixed", lambda r: dict(x=arange_f(3, 4, 5)))
def _(x):
    return x[0, :, 2], x[1:, 1, 1:4], x[..., 3:], x[:, -1, ::3], x[-1, 2:100:1], x[2, 3, 4]


@case("indexing", "steps", lambda r: dict(x=arange_f(10)))
def _(x):
    return x[1::3], x[-3:], x[:-5], x[7:2], x[-100:2]


@case("indexing", "ints", lambda r: dict(n=np.arange(12, dtype=np.int64).reshape(3, 4) * 3 - 7))
def _(n):
    return n[:, 2], n[::2, 1::2], n[-1, -1]


# ---------------------------------------------------------------- tensor_index.tdsl
@case("tensor_index", "rows", lambda r: dict(x=arange_f(5, 3), i=np.array([4, 0, -1, 2], np.int64),
                                              j=np.array([[1, -5, 3], [0, 0, 4]], np.int32)))
def _(x, i, j):
    return x[i], x[j.long()], x[i, 1]


@case("tensor_index", "later_axis", lambda r: dict(x=arange_f(2, 5, 3), i=np.array([2, -1, 0], np.int64)))
def _(x, i):
    return x[:, i], x[1, i], x[..., i].permute(2, 0, 1)[:, :, :3]


@case("tensor_index", "selects", lambda r: dict(x=arange_f(4, 6), i=np.array([3, 0, 3], np.int32), k=np.array([5, 1], np.int64)))
def _(x, i, k):
    return x.index_select(0, i), x.index_select(1, i), x.index_select(-1, k)


@case("tensor_index", "gathers", lambda r: dict(x=r.normal(3, 4), i=r.ints(0, 4, 3, 2), j=r.ints(0, 3, 2, 4, dtype=np.int32)))
def _(x, i, j):
    n = x > 0
    return torch.gather(x, 1, i), x.gather(0, j.long()), torch.gather(n.long(), -1, i)


# ---------------------------------------------------------------- reductions.tdsl
@case("reductions", "sums", lambda r: dict(x=r.normal(2, 3, 4)))
def _(x):
    return x.sum(), x.sum(dim=[0, 2]), x.sum(1, keepdim=True), x.sum([-1, 0]), \
        x.sum(dim=[0, 1, 2], keepdim=True), x.sum(-1)


@case("reductions", "means", lambda r: dict(x=r.normal(2, 3, 4)))
def _(x):
    return x.mean(), x.mean(1), x.mean([1, 2], keepdim=True), x.mean([0, -2])


@case("reductions", "prods", lambda r: dict(x=r.uniform(0.5, 1.5, 3, 4), n=r.nonzero_ints(-4, 4, 3, 4)))
def _(x, n):
    return x.prod(), x.prod(0), n.prod(1), n.prod()


@case("reductions", "int_sums", lambda r: dict(n=r.ints(-50, 50, 3, 4, dtype=np.int32), b=r.bools(3, 4)))
def _(n, b):
    return n.sum(), n.sum(0), b.sum(1, keepdim=True), (n * 0.5).sum(1)


# ---------------------------------------------------------------- minmax.tdsl
@case("minmax", "values", lambda r: dict(x=r.normal(3, 4, 2)))
def _(x):
    return x.amax(), x.amax(0), x.amin(1, keepdim=True), x.amax([1, 2]), x.amin([0, 1]), x.amin(-1)


@case("minmax", "args", lambda r: dict(x=r.normal(3, 4, 2)))
def _(x):
    return x.argmax(), x.argmax(0), x.argmin(1, keepdim=True), x.argmin(-1)


@case("minmax", "ties", lambda r: dict(n=r.ints(-2, 3, 4, 5, dtype=np.int32),
                                        b=np.array([[0, 1, 1, 0, 1], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]], bool)))
def _(n, b):
    return n.argmax(1), n.argmin(0), n.amax(1), n.amin(0), b.long().argmax(-1), b.amax(1)


# ---------------------------------------------------------------- stats.tdsl
@case("stats", "lse", lambda r: dict(x=r.normal(3, 5, scale=3)))
def _(x):
    return x.logsumexp([0, 1]), x.logsumexp(1), x.logsumexp(0, keepdim=True), (x * 10).logsumexp(-1)


@case("stats", "variance", lambda r: dict(x=r.normal(3, 5, scale=2), d=r.normal(4, 6, dtype=np.float64)))
def _(x, d):
    return x.var(unbiased=False), x.var(1, unbiased=False), x.var(0, keepdim=True, unbiased=False), \
        d.var(-1, unbiased=False), d.var([0, 1], unbiased=False)


@case("stats", "lse_int", lambda r: dict(n=np.array([[1, 2, 3], [-5, 100, 99]], np.int64)))
def _(n):
    return n.float().logsumexp(1)


# ---------------------------------------------------------------- softmax_large.tdsl
@case("softmax_large", "soft", lambda r: dict(x=np.concatenate([r.normal(1, 6, scale=300), r.normal(1, 6, scale=1000),
                                                                  r.normal(1, 6) - 800], 0)))
def _(x):
    return x.softmax(1), x.log_softmax(-1), x.softmax(0), x.logsumexp(1)


@case("softmax_large", "default_axis", lambda r: dict(x=r.normal(2, 3, 4, scale=200)))
def _(x):
    return x.softmax(-1), x.log_softmax(1), x.softmax(0)


@case("softmax_large", "mixed_scale", lambda r: dict(x=r.normal(4, 5, scale=500)))
def _(x):
    return (x * 0.001).log_softmax(1), (x - 1000).logsumexp(1), (-x).softmax(-1)


# ---------------------------------------------------------------- losses.tdsl
@case("losses", "xent", lambda r: dict(logits=r.normal(4, 5, scale=2), y=np.array([0, 4, 2, 2], np.int64),
                                        y32=np.array([1, 3, 0, 4], np.int32)))
def _(logits, y, y32):
    return F.cross_entropy(logits, y), F.cross_entropy(logits, y32.long()), F.cross_entropy(logits * 300, y)


@case("losses", "mse_loss", lambda r: dict(a=r.normal(3, 4), b=r.normal(3, 4), r=r.normal(4)))
def _(a, b, r):
    return F.mse_loss(a, b), ((a - r) ** 2).mean()


@case("losses", "xent_f64", lambda r: dict(logits=r.normal(3, 7, dtype=np.float64), y=np.array([6, 0, 3], np.int64)))
def _(logits, y):
    return F.cross_entropy(logits, y)


# ---------------------------------------------------------------- layer_norm.tdsl
@case("layer_norm", "ln", lambda r: dict(x=r.normal(3, 8, scale=2) + 1, w=r.normal(8), b=r.normal(8)))
def _(x, w, b):
    return F.layer_norm(x, (8,), w, b), F.layer_norm(x, (8,)), F.layer_norm(x, (8,), w, b, eps=0.1), \
        F.layer_norm(x, (8,), weight=w)


@case("layer_norm", "ln3", lambda r: dict(x=r.normal(2, 3, 4), w=r.normal(4), b=r.normal(4)))
def _(x, w, b):
    return F.layer_norm(x, (4,), w, b, eps=1e-6)


@case("layer_norm", "ln_strided", lambda r: dict(x=r.normal(6, 4)))
def _(x):
    return F.layer_norm(x.T[:, ::2], (3,))


# ---------------------------------------------------------------- one_hot.tdsl
@case("one_hot", "onehot", lambda r: dict(y=np.array([3, 0, 1, 3, 2], np.int64), z=np.array([[5, 0, 2], [1, 1, 4]], np.int32)))
def _(y, z):
    return F.one_hot(y, 4), F.one_hot(z.long(), 6), F.one_hot(y, 4).float() * 0.5


# ---------------------------------------------------------------- concat_stack.tdsl
@case("concat_stack", "cats", lambda r: dict(a=r.normal(2, 3), b=r.normal(1, 3), c=r.normal(2, 2)))
def _(a, b, c):
    return torch.cat([a, b], 0), torch.cat([a, c], -1), torch.cat([b, a, b, b], 0)


@case("concat_stack", "stacks", lambda r: dict(a=r.normal(2, 3), b=r.normal(2, 3)))
def _(a, b):
    return torch.stack([a, b], 0), torch.stack([a, b], 1), torch.stack([a, b], -1), torch.stack([a, b, a + b])


@case("concat_stack", "promote", lambda r: dict(n=r.ints(-9, 9, 2, 2, dtype=np.int32), x=r.normal(2, 2), k=r.ints(-9, 9, 1, 2)))
def _(n, x, k):
    return torch.cat([n, x], 0), torch.cat([n, k], 0), torch.stack([x.T, n])


# ---------------------------------------------------------------- creation.tdsl
@case("creation", "fills", lambda r: dict(x=r.normal(2, 3)))
def _(x):
    return torch.zeros(x.shape), torch.ones(3), torch.zeros([2, 2], dtype=i32), torch.full([2, 3], 1.5) + x, \
        torch.full([2], 7), torch.full([3], True), torch.ones(2, 2, dtype=f64)


@case("creation", "ranges", lambda r: dict(x=r.normal(4)))
def _(x):
    return torch.arange(4), torch.arange(2, 5), torch.arange(1, 11, 3), torch.arange(5, dtype=f32), \
        x + torch.arange(x.shape[0]), torch.arange(-3, 0, dtype=i32)


@case("creation", "eyes", lambda r: dict(x=r.normal(3, 3)))
def _(x):
    return torch.eye(3), torch.eye(2, dtype=i32), torch.eye(4, dtype=torch.bool), x * torch.eye(x.shape[0]) + torch.ones(3, 3) * 0.5


# ---------------------------------------------------------------- casts.tdsl
@case("casts", "to_int", lambda r: dict(x=np.array([-2.75, -1.5, -0.5, -0.0, 0.25, 0.999, 1.5, 123.456], np.float32)))
def _(x):
    return x.to(i32), x.to(i64), x.to(torch.bool), (x * 100).to(i32)


@case("casts", "from_int", lambda r: dict(n=np.array([-3, 0, 1, 2 ** 40 + 3, 7], np.int64), b=np.array([True, False, True, False, False])))
def _(n, b):
    return n.to(f32), n.to(f64), n.to(i32), n.to(torch.bool), b.to(f32), b.to(i64)


@case("casts", "low_precision", lambda r: dict(x=np.array([0.1, -1.0 / 3, 65504.0, 1e-5, 3.14159265, 1.00390625], np.float32)))
def _(x):
    h = x.to(f16)
    return h, h.to(f32), x.to(torch.bfloat16).to(f32), (x.to(torch.bfloat16) * 3).to(f32)


@case("casts", "wrap", lambda r: dict(n=np.array([2 ** 31, -(2 ** 31) - 1, 2 ** 33 + 5], np.int64)))
def _(n):
    return n.to(i32)


# ---------------------------------------------------------------- helpers_loops.tdsl
@case("helpers_loops", "layers", lambda r: dict(x=r.normal(2, 4), ws=r.normal(3, 4, 4, scale=0.7), bs=r.normal(3, 4, scale=0.3)))
def _(x, ws, bs):
    h = x
    for i in range(3):
        h = torch.relu(h @ ws[i] + bs[i])
    return h


@case("helpers_loops", "generic", lambda r: dict(x=r.normal(3), n=r.ints(-9, 9, 3, dtype=np.int32)))
def _(x, n):
    return x * x, n * n, (x * x - 1) * (x * x - 1)


@case("helpers_loops", "unpack", lambda r: dict(x=r.normal(2, 5)))
def _(x):
    m = x.mean(-1, keepdim=True)
    c = x - m
    return m, c * c


@case("helpers_loops", "accumulate", lambda r: dict(x=r.normal(4)))
def _(x):
    acc = x
    for k in range(1, 4):
        acc = acc + x * k
        acc = acc / 2
    return acc - 1


@case("helpers_loops", "later", lambda r: dict(x=r.normal(3)))
def _(x):
    return 2 * x + (x + 1)


# ---------------------------------------------------------------- consts_shapes.tdsl
@case("consts_shapes", "shaped", lambda r: dict(x=r.normal(2, 5)))
def _(x):
    n, m = x.shape[0], x.shape[-1]
    v = x.view(x.shape[1], n)
    return v, x.sum(1, keepdim=True) / m, torch.zeros(6) + 6, x * x.ndim + x.numel() + x.size(1)


@case("consts_shapes", "lists", lambda r: dict(x=r.normal(2, 3, 4)))
def _(x):
    s = x.shape
    return x.reshape(s[2], s[0] * s[1])


# ---------------------------------------------------------------- tuples.tdsl
@case("tuples", "many", lambda r: dict(x=r.normal(3, 4)))
def _(x):
    return x.sum(), x.argmax(1), x > 0, x.T, (x * 10).to(i32)[:, 0]


@case("tuples", "same_twice", lambda r: dict(x=r.normal(2)))
def _(x):
    y = x + 1
    return y, y


@case("tuples", "literal_out", lambda r: dict(x=r.normal(2)))
def _(x):
    return x, torch.tensor(2.5)


@case("tuples", "untyped", lambda r: dict(x=r.normal(2), n=np.array([5, -9], np.int32)))
def _(x, n):
    return x * 2, n.sum(), torch.tensor(3), torch.tensor(True)


# ---------------------------------------------------------------- mlp.tdsl
def mlp_inputs(r, with_y):
    d = dict(x=r.normal(6, 5))
    if with_y:
        d["y"] = r.ints(0, 3, 6)
    d.update(w1=r.normal(7, 5, scale=0.5), b1=r.normal(7, scale=0.1), w2=r.normal(3, 7, scale=0.5), b2=r.normal(3, scale=0.1))
    return d


@case("mlp", "forward", lambda r: mlp_inputs(r, False))
def _(x, w1, b1, w2, b2):
    return F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2)


@case("mlp", "loss", lambda r: mlp_inputs(r, True))
def _(x, y, w1, b1, w2, b2):
    logits = F.linear(torch.relu(F.linear(x, w1, b1)), w2, b2)
    hits = (logits.argmax(1) == y).float()
    return F.cross_entropy(logits, y), hits.mean(), logits.softmax(1)


# ---------------------------------------------------------------- attention.tdsl
@case("attention", "attend", lambda r: dict(x=r.normal(2, 4, 6), wq=r.normal(6, 6, scale=0.5), wk=r.normal(6, 6, scale=0.5),
                                             wv=r.normal(6, 6, scale=0.5)))
def _(x, wq, wk, wv):
    T, E, NH, HD = 4, 6, 2, 3

    def split(t):
        return t.view(t.shape[0], T, NH, HD).transpose(1, 2)
    q, k, v = split(x @ wq), split(x @ wk), split(x @ wv)
    s = q @ k.transpose(-2, -1) * (1.0 / HD ** 0.5)
    future = torch.arange(T).unsqueeze(1) < torch.arange(T)
    p = s.masked_fill(future, -1e9).softmax(-1)
    o = (p @ v).transpose(1, 2).contiguous().view(2, T, E)
    return o, p


# ---------------------------------------------------------------- half.tdsl
def half_inputs(r):
    return dict(a=r.normal(3, 4, dtype=np.float16), b=r.normal(3, 4, dtype=np.float16))


@case("half", "elementwise", half_inputs)
def _(a, b):
    return a + b, a * b, a / (b * b + 1), via_f32(torch.exp, a), via_f32(torch.tanh, a) * 3


@case("half", "reduce_half", lambda r: dict(a=r.normal(3, 4, dtype=np.float16)))
def _(a):
    return via_f32(lambda t: t.sum(1), a), a.amax(0), via_f32(lambda t: t.mean(), a), via_f32(lambda t: t.softmax(-1), a)


@case("half", "mixed", lambda r: dict(a=r.normal(3, 4, dtype=np.float16), x=r.normal(4)))
def _(a, x):
    return a * x, (a + x).sum(1)


@case("half", "half_matmul", lambda r: dict(a=r.normal(2, 3, dtype=np.float16), b=r.normal(3, 2, dtype=np.float16)))
def _(a, b):
    return via_f32(torch.matmul, a, b)


# ---------------------------------------------------------------- special_values.tdsl
NAN, INF = float("nan"), float("inf")


@case("special_values", "produce", lambda r: dict(x=np.array([1.0, -1.0, 0.0, 4.0, -0.0, 2.5], np.float32),
                                                   z=np.array([0.0, 0.0, 0.0, -0.0, 2.0, -2.0], np.float32)))
def _(x, z):
    return x / z, z.log(), x.sqrt(), z / z


@case("special_values", "propagate", lambda r: dict(a=np.array([NAN, 1.0, NAN, -INF, INF, -0.5], np.float32),
                                                     b=np.array([0.0, NAN, NAN, 2.0, -3.0, NAN], np.float32)))
def _(a, b):
    return torch.maximum(a, b), torch.minimum(a, b), a.relu(), a.clamp(-1, 1), a.sign(), a.sigmoid()


@case("special_values", "reduce_nan", lambda r: dict(x=np.array([[1.0, NAN, 3.0, -2.0], [-INF, 0.5, INF, 0.25]], np.float32)))
def _(x):
    return x.amax(1), x.argmax(1), x.amin(1), x.argmin(1), x.sum(1), x.logsumexp(1)


@case("special_values", "masked_rows", lambda r: dict(x=r.normal(3, 4, scale=50),
                                                       m=np.array([[0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 1]], bool)))
def _(x, m):
    y = x.masked_fill(m, -INF)
    return y.softmax(1), y.log_softmax(1), y.logsumexp(1), y.amax(1)


@case("special_values", "int_div_zero", lambda r: dict(n=np.array([3, -3, 0, 7], np.int32), m=np.array([0, 0, 0, 2], np.int32)))
def _(n, m):
    return n / m


@case("special_values", "half_overflow", lambda r: dict(h=np.array([100.0, -70.0, 0.5, 65.0], np.float16)))
def _(h):
    big = h * 1000
    return big, big - big, big > 60000


# ---------------------------------------------------------------- edge_shapes.tdsl
@case("edge_shapes", "empty", lambda r: dict(x=r.normal(5)))
def _(x):
    e = x[3:3]
    return e, e.sum(), e.prod(), torch.zeros(0, 3) + 1, e.view(0, 3)


@case("edge_shapes", "scalars", lambda r: dict(s=r.scalar(), t=r.scalar()))
def _(s, t):
    return torch.stack([s, t]), s.flatten(), s.view(1, 1), s.expand(2, 2), s.reshape([])


@case("edge_shapes", "neg_arange", lambda r: dict(x=r.normal(3)))
def _(x):
    return torch.arange(5, 0, -2), torch.arange(-1, -4, -1), x * torch.arange(3, 0, -1)


@case("edge_shapes", "partial_gather", lambda r: dict(x=r.normal(3, 4), i=np.array([[3, 0], [2, 2]], np.int64)))
def _(x, i):
    return torch.gather(x, 1, i), torch.gather(x.T, 0, i)


@case("edge_shapes", "strided_inputs", lambda r: dict(x=r.normal(4, 6), i=np.array([5, 0, 2], np.int64)))
def _(x, i):
    t = x.T
    return t.index_select(0, i), t.argmax(), t.argmin(0), t.contiguous()


@case("edge_shapes", "size_one", lambda r: dict(x=r.normal(1, 4), y=r.normal(4, 1)))
def _(x, y):
    return x * y, x.sum(1), y.squeeze(-1), x @ y


# ---------------------------------------------------------------- promotion_more.tdsl
@case("promotion_more", "zero_dim_higher", lambda r: dict(n=r.ints(-9, 9, 3, dtype=np.int32), d=r.scalar(np.float64),
                                                           b=np.array([True, False, True]), k=np.array(-4, np.int64)))
def _(n, d, b, k):
    return n + d, b + k, b * 1.5, d + k


@case("promotion_more", "literal_powers", lambda r: dict(n=np.array([0, 1, 3, 10], np.int32), x=r.uniform(0.5, 1.5, 4)))
def _(n, x):
    return 2 ** n, 2.0 ** n, x ** n, n ** 1.5


@case("promotion_more", "int_compare", lambda r: dict(n=np.array([1, 2, 3, 2 ** 40 + 1, -5], np.int64)))
def _(n):
    return n > 1.5, n == 2.0, n.to(f32) <= n


@case("promotion_more", "overflow", lambda r: dict(n=np.array([50000, -65536, 7], np.int32)))
def _(n):
    return n * n, n.to(i64) * n


@case("promotion_more", "where_mixed", lambda r: dict(c=np.array([True, False, False, True]), n=r.ints(-9, 9, 4, dtype=np.int32),
                                                       k=r.ints(-9, 9, 4), h=r.normal(4, dtype=np.float16)))
def _(c, n, k, h):
    return torch.where(c, n.long(), k), torch.where(c, h, torch.tensor(2, dtype=f16)), \
        torch.where(c, h, torch.tensor(2.5, dtype=f16)).to(f32) + n


# ---------------------------------------------------------------- half_nn.tdsl
@case("half_nn", "nn_half", lambda r: dict(x=r.normal(3, 6, dtype=np.float16), w=r.normal(6, dtype=np.float16),
                                            b=r.normal(6, dtype=np.float16), y=np.array([5, 0, 2], np.int64)))
def _(x, w, b, y):
    return via_f32(lambda t, tw, tb: F.layer_norm(t, (6,), tw, tb), x, w, b), via_f32(lambda t: t.log_softmax(1), x), \
        via_f32(lambda t: F.cross_entropy(t, y), x), via_f32(lambda t: t.var(1, unbiased=False), x), via_f32(F.gelu, x)


# ---------------------------------------------------------------- misc.tdsl
@case("misc", "index0", lambda r: dict(x=r.normal(4, 2), i=np.array(-2, np.int64)))
def _(x, i):
    return x[i], x[1:3][0]


@case("misc", "expanded", lambda r: dict(r=r.normal(3)))
def _(r):
    e = r.expand(4, 3)
    return e.reshape(12), e.view(2, 2, 3), e.T.contiguous(), e[..., ::1][2]


@case("misc", "more_views", lambda r: dict(x=arange_f(2, 3, 4), v=r.normal(5)))
def _(x, v):
    return x.flatten(start_dim=-2), v.transpose(0, 0), x[:, 1:][..., ::2], x.permute(2, 1, 0).contiguous().view(-1)


@case("misc", "typed", lambda r: dict(x=np.array([0.5, -1.0, 2.0], np.float32)))
def _(x):
    c = x > 0
    return torch.full([2], 2.5, dtype=i32), torch.zeros(2, 3, dtype=torch.bool), torch.eye(3, dtype=f16), \
        torch.where(c, torch.tensor(1), torch.tensor(0)), torch.where(c, torch.tensor(True), torch.tensor(False))


@case("misc", "literal_fills", lambda r: dict(n=np.array([-2147483648, -7, 0, 8], np.int32), m=np.array([False, True, False, True])))
def _(n, m):
    return n.masked_fill(m, 2.5), -n, n % -3


@case("misc", "bool_math", lambda r: dict(a=np.array([False, False, True, True]), b=np.array([False, True, False, True])))
def _(a, b):
    return a + b, a * b, torch.maximum(a, b), torch.minimum(a, b), (a + b).sum()


@case("misc", "loops", lambda r: dict(x=r.normal(3, 3), w=r.normal(3, 3, scale=0.5)))
def _(x, w):
    h = x
    for i in range(2):
        for j in range(i + 1):
            h = torch.tanh(h @ w) + j
    return h, torch.tanh(x @ w)


@case("misc", "half_misc", lambda r: dict(h=r.normal(2, 5, scale=3, dtype=np.float16)))
def _(h):
    return h.abs(), via_f32(lambda t: t.logsumexp(1), h), h.float().argmax(1), h - via_f32(lambda t: t % 1, h)


# ---------------------------------------------------------------- strided_ops.tdsl
@case("strided_ops", "reduce_t", lambda r: dict(x=r.normal(4, 6, scale=3)))
def _(x):
    t = x.T
    return t.sum(0), t.amax(1, keepdim=True), x[1:, ::2].mean([0, 1]).expand(3), t.argmin(1), t.logsumexp(1)


@case("strided_ops", "nn_t", lambda r: dict(x=r.normal(5, 4), y=r.ints(0, 3, 8), w=r.normal(10), b=r.normal(5)))
def _(x, y, w, b):
    t = x.T
    return t.softmax(1), F.cross_entropy(t, y[::2]), F.layer_norm(t, (5,), w[::2], b), F.one_hot(y[1::2], 3)


@case("strided_ops", "copies_t", lambda r: dict(a=r.normal(3, 2), b=r.normal(2, 3)))
def _(a, b):
    e = b[0].expand(2, 3)
    return torch.cat([a.T, b], 0), e * a.T + e, a @ b[:, 1:].T.contiguous().T[:, :1].expand(2, 3)


# ---------------------------------------------------------------- writing
NP_DTYPES = {f16: np.float16, f32: np.float32, f64: np.float64, i32: np.int32, i64: np.int64, torch.bool: np.bool_}


def to_numpy(t, what):
    if not isinstance(t, torch.Tensor):
        raise SystemExit(f"{what}: the mirror returned {type(t).__name__}, not a tensor")
    if t.dtype not in NP_DTYPES:
        raise SystemExit(f"{what}: dtype {t.dtype} has no .npy form")
    return np.array(t.detach().numpy(), dtype=NP_DTYPES[t.dtype], order="C")  # keeps rank 0


def main():
    os.makedirs(DATA, exist_ok=True)
    for f in os.listdir(DATA):
        if f.endswith(".npy"):
            os.remove(os.path.join(DATA, f))
    seen = set()
    for prog, fn, make, compute in CASES:
        key = f"{prog}.{fn}"
        if key in seen:
            raise SystemExit(f"duplicate case {key}")
        seen.add(key)
        if not os.path.exists(os.path.join(HERE, prog + ".tdsl")):
            raise SystemExit(f"{key}: no {prog}.tdsl")
        inputs = make(Rng(zlib.crc32(key.encode())))
        for name, arr in inputs.items():
            np.save(os.path.join(DATA, f"{key}.in.{name}.npy"), np.array(arr, order="C"))
        outs = compute(**{n: torch.from_numpy(np.array(a)) for n, a in inputs.items()})
        if not isinstance(outs, tuple):
            outs = (outs,)
        for k, t in enumerate(outs):
            np.save(os.path.join(DATA, f"{key}.out.{k}.npy"), to_numpy(t, f"{key} output {k}"))
    total = sum(os.path.getsize(os.path.join(DATA, f)) for f in os.listdir(DATA))
    print(f"{len(CASES)} fns in {len({c[0] for c in CASES})} programs, {total} bytes in {DATA}")


if __name__ == "__main__":
    sys.exit(main())
