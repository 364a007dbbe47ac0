#!/usr/bin/python3
"""Reference for kn_attention / kn_attention_backward: writes tests/data/attention.safetensors.

Runs with Debian's torch (/usr/bin/python3, torch 1.13). Everything is computed in float64 from
the definition (softmax(q k^T * scale + mask) v, per head of view(B, L, H, D)) and stored as
float32; gradients come from autograd on sum(o * dout). Keys per case "<case>.<name>":
q, k, v, [mask], dout, o, lse (B,H,Lq), dq, dk, dv, and "<case>.dims" = [B, Lq, Lk, H, D, Dv]
plus the scale, stored as float32 [scale]."""
import json
import struct
import sys

import torch


def attention(q, k, v, H, scale, mask):
    B, Lq, C = q.shape
    Lk = k.shape[1]
    D, Dv = C // H, v.shape[2] // H
    qh = q.view(B, Lq, H, D).transpose(1, 2)
    kh = k.view(B, Lk, H, D).transpose(1, 2)
    vh = v.view(B, Lk, H, Dv).transpose(1, 2)
    s = qh @ kh.transpose(-1, -2) * scale
    if mask is not None:
        s = s + mask[:, None]
    lse = torch.logsumexp(s, dim=-1)
    p = torch.softmax(s, dim=-1)
    o = (p @ vh).transpose(1, 2).reshape(B, Lq, H * Dv)
    return o, lse


def case(name, B, Lq, Lk, H, D, Dv, with_mask, seed, out):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Lq, H * D, generator=g, dtype=torch.float64)
    k = torch.randn(B, Lk, H * D, generator=g, dtype=torch.float64)
    v = torch.randn(B, Lk, H * Dv, generator=g, dtype=torch.float64)
    dout = torch.randn(B, Lq, H * Dv, generator=g, dtype=torch.float64)
    # round inputs to float32 first so C and torch see the same numbers
    q, k, v, dout = [t.float().double().requires_grad_(i < 3) for i, t in enumerate((q, k, v, dout))]
    mask = None
    if with_mask:
        mask = torch.randn(B, Lq, Lk, generator=g, dtype=torch.float64).float().double()
        drop = torch.rand(B, Lq, Lk, generator=g) < 0.3
        drop[:, :, 0] = False  # no fully masked row (torch would give NaN)
        mask[drop] = float("-inf")
    scale = float(torch.tensor(1.0 / D ** 0.5, dtype=torch.float32))
    o, lse = attention(q, k, v, H, scale, mask)
    (o * dout).sum().backward()
    t = {"q": q, "k": k, "v": v, "dout": dout, "o": o, "lse": lse, "dq": q.grad, "dk": k.grad, "dv": v.grad}
    if mask is not None:
        t["mask"] = mask
    for key, val in t.items():
        out[name + "." + key] = val.detach().float().contiguous()
    out[name + ".dims"] = torch.tensor([B, Lq, Lk, H, D, Dv, scale], dtype=torch.float32)


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    out = {}
    case("self_mask", 2, 37, 37, 2, 40, 40, True, 1, out)  # self-attention, odd length, mask
    case("cross", 1, 70, 77, 4, 16, 8, False, 2, out)       # cross-attention with text, Dv != D
    case("temporal", 12, 5, 5, 3, 8, 8, False, 3, out)      # many short sequences
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/data/attention.safetensors"
    write_safetensors(path, out)
    print(path, sum(t.numel() for t in out.values()) * 4, "bytes")


if __name__ == "__main__":
    main()
