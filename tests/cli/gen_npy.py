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

# Checkpoints for docs/examples/tiny.tdsl (W: f32[4, 3], b: f32[3]), as a module with an Adam
# step would save them: the params, its optimizer state, and the metadata listing that state.
# tiny.tdsl has no step: run --params must pass over the listed state and refuse "junk".
try:
    import safetensors.numpy as stn
    W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    b = np.array([1.0, -1.0, 0.5], dtype=np.float32)
    state = {"step.W.exp_avg": np.ones((4, 3), np.float32), "step.step": np.array(7, np.int64)}
    meta = {"module": "trainer", "optimizer_state": "step.W.exp_avg\nstep.step"}
    stn.save_file({"W": W, "b": b, **state}, path("tiny_ckpt.safetensors"), metadata=meta)
    stn.save_file({"W": W, "b": b, **state, "junk": np.zeros(2, np.float32)}, path("tiny_junk.safetensors"),
                  metadata=meta)
except ImportError:
    print("safetensors is not installed: tiny_ckpt.safetensors and tiny_junk.safetensors not written")
