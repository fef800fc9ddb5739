#!/usr/bin/env python3
"""Writes scikit-learn's 8x8 digits as raw little-endian files for main.c:
train_x.bin / test_x.bin (f32 [N, 64], pixels scaled 0..16 -> 0..1) and
train_y.bin / test_y.bin (i32 [N]). The split is fixed (seed 0, 20% test).
Run with /usr/bin/python3 (Debian's python3-sklearn) or any Python with scikit-learn."""
import os
import numpy as np
from sklearn.datasets import load_digits

here = os.path.dirname(os.path.abspath(__file__))
d = load_digits()
x = (d.data / 16.0).astype('<f4')
y = d.target.astype('<i4')
perm = np.random.RandomState(0).permutation(len(x))
n_test = len(x) // 5
test, train = perm[:n_test], perm[n_test:]
for name, idx in (('train', train), ('test', test)):
    x[idx].tofile(os.path.join(here, name + '_x.bin'))
    y[idx].tofile(os.path.join(here, name + '_y.bin'))
    print(f'{name}: {len(idx)} samples')
