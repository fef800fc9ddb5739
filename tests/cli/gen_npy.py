"""Writes the .npy files used by the command-line tests (run once; the outputs are committed).
python3 tests/cli/gen_npy.py  (from the repository root)"""
import os
import numpy as np

here = os.path.dirname(os.path.abspath(__file__))


def path(name):
    return os.path.join(here, name)


np.save(path("x3.npy"), np.array([1.0, -2.0, 0.5], dtype=np.float32))          # valid f32[3]
np.save(path("wrong_shape.npy"), np.zeros((2, 2), dtype=np.float32))           # f32[2, 2]
np.save(path("wrong_dtype.npy"), np.array([1.0, 2.0, 3.0], dtype=np.float64))  # f64[3]
np.save(path("bigendian.npy"), np.array([1.0, -2.0, 0.5], dtype=">f4"))        # >f4 [3]
np.save(path("n3.npy"), np.array([1, 2, -3], dtype=np.int32))                  # valid i32[3]
# Header of an f32[3] array but only 2 of its 3 elements.
with open(path("x3.npy"), "rb") as f:
    whole = f.read()
with open(path("truncated.npy"), "wb") as f:
    f.write(whole[:-4])
# Header cut in the middle.
with open(path("truncated_header.npy"), "wb") as f:
    f.write(whole[:20])
# Not a .npy at all (fixed bytes, so the file never changes).
with open(path("garbage.npy"), "wb") as f:
    f.write(bytes((i * 37 + 11) % 256 for i in range(64)))
np.save(path("a2x2.npy"), np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32))  # valid f32[2, 2]
