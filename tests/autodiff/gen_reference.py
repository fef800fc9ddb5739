#!/usr/bin/python3
"""Reference gradients for tests/autodiff/*.tdsl, written with PyTorch's autograd.

Run with Debian's python3 (python3-torch): /usr/bin/python3 tests/autodiff/gen_reference.py
Writes data/<prog>.in.<arg>.npy, data/<prog>.param.<name>.npy and data/<prog>.out.<k>.npy
(k = 0: the loss, then one gradient per wrt entry in the export's order). The .npy files
are committed: CI has no Python. Each program's torch code mirrors its .tdsl file.
Program names as arguments write only those (the random draws stay the same)."""
import os
import sys
import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
rng = np.random.default_rng(1234)
ONLY = set(sys.argv[1:])


def f32(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def save(prog, kind, name, arr):
    np.save(os.path.join(DATA, f"{prog}.{kind}.{name}.npy"), np.array(arr, order="C"))


def run(prog, ins, params, fn, wrt):
    """ins/params: name -> numpy; fn(t) -> loss from a dict of tensors; wrt: names in order."""
    if ONLY and prog not in ONLY:
        return
    for k, v in ins.items():
        save(prog, "in", k, v)
    for k, v in params.items():
        save(prog, "param", k, v)
    t = {k: torch.tensor(v, requires_grad=(k in wrt)) for k, v in {**ins, **params}.items()}
    loss = fn(t)
    grads = torch.autograd.grad(loss, [t[w] for w in wrt])
    save(prog, "out", "0", loss.detach().numpy().astype(np.float32))
    for i, gr in enumerate(grads):
        save(prog, "out", str(i + 1), gr.numpy().astype(np.float32))


def mlp_xent(t):
    h = torch.relu(t["x"] @ t["W1"] + t["b1"])
    return F.cross_entropy(h @ t["W2"] + t["b2"], t["y"])


def layernorm_gelu(t):
    h = F.gelu(F.layer_norm(t["x"], (6,), t["w"], t["b"], 1e-5) @ t["W"])
    u = F.gelu(h, approximate="tanh")
    return (u * u).mean() + h.sum() / 10


def attention(t):
    x = t["x"]
    q, k, v = x @ t["Wq"], x @ t["Wk"], x @ t["Wv"]
    a = torch.softmax(q @ k.transpose(1, 2) / 2.8284271247461903, 2)
    o = a @ v + x
    return torch.logsumexp(o, 2).mean() + o.var(unbiased=False)


def bias_broadcast(t):
    x = t["x"]
    y = torch.tanh(x * t["s"] + t["rb"] + t["cb"])
    z = y.permute(2, 0, 1).reshape(4, 6)
    return (torch.amax(z, 1) ** 2).sum() + (torch.sigmoid(y[:, 1:3, :]) * torch.log_softmax(x[:, 1:3, :], 2)).mean()


def embedding(t):
    emb = t["C"][t["ix"]]
    h = torch.tanh(emb.view(6, 12) @ t["W1"] + t["b1"])
    logits = h @ t["W2"] + t["b2"]
    picked = torch.gather(logits, 1, t["y"].unsqueeze(1))
    return F.cross_entropy(logits, t["y"]) + (h[:, ::3] ** 2).mean() - 0.1 * picked.mean()


def resnet_block(h, W, V):
    u = torch.relu(h @ W)
    return h + torch.tanh(u @ V) * 0.5


def checkpoint_resnet(t):
    h = t["x"]
    for i in "123":
        h = torch.utils.checkpoint.checkpoint(resnet_block, h, t["W" + i], t["V" + i], use_reentrant=False)
    return F.cross_entropy(h @ t["Wo"], t["y"])


def main():
    os.makedirs(DATA, exist_ok=True)
    torch.set_default_dtype(torch.float32)
    run("mlp_xent", {"x": f32(5, 6), "y": rng.integers(0, 4, size=5).astype(np.int64)},
        {"W1": f32(6, 8, scale=0.5), "b1": f32(8, scale=0.1), "W2": f32(8, 4, scale=0.5), "b2": f32(4, scale=0.1)},
        mlp_xent, ["W1", "b1", "W2", "b2"])
    run("layernorm_gelu", {"x": f32(3, 4, 6)}, {"w": 1 + f32(6, scale=0.1), "b": f32(6, scale=0.1),
                                                "W": f32(6, 6, scale=0.4)},
        layernorm_gelu, ["x", "w", "b", "W"])
    run("attention", {"x": f32(2, 5, 8)}, {"Wq": f32(8, 8, scale=0.35), "Wk": f32(8, 8, scale=0.35),
                                           "Wv": f32(8, 8, scale=0.35)},
        attention, ["x", "Wq", "Wk", "Wv"])
    run("bias_broadcast", {"x": f32(2, 3, 4)}, {"s": np.array(0.7, dtype=np.float32), "rb": f32(4, scale=0.3),
                                                "cb": f32(3, 1, scale=0.3)},
        bias_broadcast, ["s", "rb", "cb"])
    run("embedding", {"ix": rng.integers(-7, 7, size=(6, 4)).astype(np.int64),
                      "y": rng.integers(0, 7, size=6).astype(np.int64)},
        {"C": f32(7, 3), "W1": f32(12, 10, scale=0.4), "b1": f32(10, scale=0.1), "W2": f32(10, 7, scale=0.4),
         "b2": f32(7, scale=0.1)},
        embedding, ["C", "W1", "b1", "W2", "b2"])
    blocks = {}
    for i in "123":
        blocks["W" + i] = f32(12, 24, scale=0.3)
        blocks["V" + i] = f32(24, 12, scale=0.3)
    run("checkpoint_resnet", {"x": f32(10, 12), "y": rng.integers(0, 5, size=10).astype(np.int64)},
        {**blocks, "Wo": f32(12, 5, scale=0.4)}, checkpoint_resnet,
        ["W1", "V1", "W2", "V2", "W3", "V3", "Wo"])


if __name__ == "__main__":
    main()
