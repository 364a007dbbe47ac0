#!/usr/bin/python3
"""ref_conv.py — PyTorch reference for kinema's convolutions (src/ops/conv.c).

Writes tests/data/conv_ref.safetensors: for each case <c>, the inputs <c>.x, <c>.w, <c>.b, a
random upstream gradient <c>.r, the forward output <c>.y = conv(x, w, b), and the gradients of
L = sum(y * r) by autograd: <c>.dx, <c>.dw, <c>.db.

Run with Debian's torch:  /usr/bin/python3 dev/ref_conv.py
"""
import json
import os
import struct

import torch
import torch.nn.functional as F

torch.manual_seed(1234)


def write_safetensors(path, tensors):
    """Minimal safetensors writer: u64 LE header size, JSON header, raw little-endian data."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().to(torch.float32)
        data = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    header["__metadata__"] = {"source": "dev/ref_conv.py", "torch": torch.__version__}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


out = {}


def case(name, x_shape, w_shape, fn):
    x = torch.randn(*x_shape, dtype=torch.float64, requires_grad=True)
    w = (torch.randn(*w_shape, dtype=torch.float64) * 0.3).requires_grad_(True)
    b = torch.randn(w_shape[0], dtype=torch.float64, requires_grad=True)
    y = fn(x, w, b)
    r = torch.randn(*y.shape, dtype=torch.float64)
    (y * r).sum().backward()
    for k, v in (("x", x), ("w", w), ("b", b), ("r", r), ("y", y), ("dx", x.grad), ("dw", w.grad),
                 ("db", b.grad)):
        out[f"{name}.{k}"] = v


# 3x3, stride 1, pad 1, C=3 (the U-Net conv_in shape class), odd H, W
case("c2d_pad1", (2, 3, 9, 7), (4, 3, 3, 3), lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=1))
# groups 2, stride 2, pad 1
case("c2d_g2s2", (2, 4, 11, 10), (6, 2, 3, 3), lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, groups=2))
# the VAE encoder downsample: pad (left 0, right 1, top 0, bottom 1) then 3x3 stride 2
case("c2d_asym", (1, 5, 9, 8), (3, 5, 3, 3),
     lambda x, w, b: F.conv2d(F.pad(x, (0, 1, 0, 1)), w, b, stride=2))
# 1x1 conv (shortcut / proj)
case("c2d_1x1", (2, 6, 5, 3), (4, 6, 1, 1), lambda x, w, b: F.conv2d(x, w, b))
# diffusers TemporalConvLayer conv: Conv3d kernel (3,1,1), padding (1,0,0)
case("c3d_t311", (2, 3, 5, 4, 3), (4, 3, 3, 1, 1), lambda x, w, b: F.conv3d(x, w, b, padding=(1, 0, 0)))
# a general 3-D conv with strides
case("c3d_gen", (1, 2, 5, 7, 6), (3, 2, 3, 3, 3),
     lambda x, w, b: F.conv3d(x, w, b, stride=(1, 2, 2), padding=(1, 1, 1)))

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "conv_ref.safetensors")
write_safetensors(os.path.normpath(path), out)
print("wrote", os.path.normpath(path), sum(v.numel() for v in out.values()) * 4, "bytes of data")
