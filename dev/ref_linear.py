#!/usr/bin/python3
"""Reference numbers for tests/test_gemm.c: nn.Linear and batched matmul (with batch
broadcast), forward and backward, from PyTorch. Writes tests/data/linear.safetensors.
Run with Debian's torch: /usr/bin/python3 dev/ref_linear.py"""
import json, os, struct
import torch

torch.manual_seed(1234)
out = {}

# linear: x (2,3,37) -> y (2,3,19)
x = torch.randn(2, 3, 37, requires_grad=True)
lin = torch.nn.Linear(37, 19)
y = lin(x)
dy = torch.randn_like(y)
y.backward(dy)
out.update({"lin.x": x, "lin.w": lin.weight, "lin.b": lin.bias, "lin.y": y, "lin.dy": dy,
            "lin.dx": x.grad, "lin.dw": lin.weight.grad, "lin.db": lin.bias.grad})

# matmul: a (3,17,23) @ b (1,23,29) -> c (3,17,29); b broadcast over the batch
a = torch.randn(3, 17, 23, requires_grad=True)
b = torch.randn(1, 23, 29, requires_grad=True)
c = torch.matmul(a, b)
dc = torch.randn_like(c)
c.backward(dc)
out.update({"mm.a": a, "mm.b": b, "mm.c": c, "mm.dc": dc, "mm.da": a.grad, "mm.db": b.grad})


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        data = t.detach().contiguous().float().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for d in blobs:
            f.write(d)


here = os.path.dirname(os.path.abspath(__file__))
write_safetensors(os.path.join(here, "..", "tests", "data", "linear.safetensors"), out)
print("wrote tests/data/linear.safetensors")
