#!/usr/bin/python3
"""ref_ops.py — PyTorch reference numbers for the normalisation, activation, resize and misc ops.

Run with Debian's python (torch 1.13):  /usr/bin/python3 dev/ref_ops.py
Writes tests/data/ops_{norm,act,resize,misc}.safetensors (F32 tensors; inputs, outputs and
autograd gradients for an upstream gradient dy). The C tests in tests/test_{norm,activation,
resize,misc_ops}.c read them.
"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F

torch.manual_seed(1234)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")


def save(path, tensors):
    """Minimal safetensors writer: u64 LE header length, JSON header, raw little-endian F32 data."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.detach().contiguous().to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    print(f"{path}: {len(tensors)} tensors, {8 + len(h) + off} bytes")


def grads(fn, inputs, dy=None):
    """y = fn(*inputs); returns y, dy, and d(sum(y*dy))/d(input) for each input."""
    xs = [x.detach().clone().requires_grad_(True) for x in inputs]
    y = fn(*xs)
    if dy is None:
        dy = torch.randn_like(y)
    y.backward(dy)
    return y.detach(), dy, [x.grad.detach() for x in xs]


def norm():
    T = {}
    # group norm, frames = 1: (N, C, H, W), 4 groups
    x = torch.randn(2, 8, 5, 6) * 2 + 0.5
    g = torch.randn(8)
    b = torch.randn(8)
    y, dy, (dx, dg, db) = grads(lambda x, g, b: F.group_norm(x, 4, g, b, 1e-5), [x, g, b])
    T.update({"gn_x": x, "gn_gamma": g, "gn_beta": b, "gn_y": y, "gn_dy": dy, "gn_dx": dx, "gn_dgamma": dg,
              "gn_dbeta": db})
    # group norm over the 5-D (N, C, T, H, W) tensor; stored folded as (N*T, C, H, W)
    N, C, Tn, H, W = 2, 8, 3, 4, 5
    x5 = torch.randn(N, C, Tn, H, W) - 1.0
    g = torch.randn(C)
    b = torch.randn(C)
    y, dy, (dx, dg, db) = grads(lambda x, g, b: F.group_norm(x, 2, g, b, 1e-6), [x5, g, b])

    def fold(t):
        return t.permute(0, 2, 1, 3, 4).reshape(N * Tn, C, H, W)

    T.update({"gn5_x": fold(x5), "gn5_gamma": g, "gn5_beta": b, "gn5_y": fold(y), "gn5_dy": fold(dy),
              "gn5_dx": fold(dx), "gn5_dgamma": dg, "gn5_dbeta": db})
    # layer norm over D = 40 and D = 33
    for name, D in (("ln", 40), ("ln33", 33)):
        x = torch.randn(3, 7, D) * 1.5 + 0.3
        g = torch.randn(D)
        b = torch.randn(D)
        y, dy, (dx, dg, db) = grads(lambda x, g, b: F.layer_norm(x, (D,), g, b, 1e-5), [x, g, b])
        T.update({f"{name}_x": x, f"{name}_gamma": g, f"{name}_beta": b, f"{name}_y": y, f"{name}_dy": dy,
                  f"{name}_dx": dx, f"{name}_dgamma": dg, f"{name}_dbeta": db})
    save(os.path.join(OUT, "ops_norm.safetensors"), T)


def act():
    T = {}
    x = torch.linspace(-6, 6, 241)
    x = torch.cat([x, torch.randn(271) * 3])
    T["x"] = x
    fns = {
        "silu": F.silu,
        "relu": F.relu,
        "gelu": lambda v: F.gelu(v),
        "gelu_tanh": lambda v: F.gelu(v, approximate="tanh"),
        "quick_gelu": lambda v: v * torch.sigmoid(1.702 * v),
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
    }
    dy = torch.randn_like(x)
    T["dy"] = dy
    for name, fn in fns.items():
        y, _, (dx,) = grads(fn, [x], dy)
        T[f"{name}_y"] = y
        T[f"{name}_dx"] = dx
    # diffusers GEGLU: hidden, gate = proj(x).chunk(2, dim=-1); hidden * gelu(gate)
    xg = torch.randn(3, 5, 48) * 2
    y, dy, (dx,) = grads(lambda v: v.chunk(2, dim=-1)[0] * F.gelu(v.chunk(2, dim=-1)[1]), [xg])
    T.update({"geglu_x": xg, "geglu_y": y, "geglu_dy": dy, "geglu_dx": dx})
    save(os.path.join(OUT, "ops_act.safetensors"), T)


def resize():
    T = {}
    x = torch.randn(2, 3, 5, 7)
    T["x"] = x
    for mode in ("nearest", "bilinear"):
        for (ho, wo) in ((10, 14), (3, 4), (7, 11), (8, 5)):
            kw = {} if mode == "nearest" else {"align_corners": False}
            y, dy, (dx,) = grads(lambda v: F.interpolate(v, size=(ho, wo), mode=mode, **kw), [x])
            T[f"{mode}_{ho}x{wo}_y"] = y
            T[f"{mode}_{ho}x{wo}_dy"] = dy
            T[f"{mode}_{ho}x{wo}_dx"] = dx
    # linear in time of folded video (N*T, C, H, W): N = 2, T = 3
    N, Tn, C, H, W = 2, 3, 2, 3, 4
    xt = torch.randn(N * Tn, C, H, W)
    T["time_x"] = xt
    for To in (5, 2, 7):
        def tl(v):
            P = C * H * W
            u = v.reshape(N, Tn, P).permute(0, 2, 1)  # (N, P, T)
            u = F.interpolate(u, size=To, mode="linear", align_corners=False)
            return u.permute(0, 2, 1).reshape(N * To, C, H, W)
        y, dy, (dx,) = grads(tl, [xt])
        T[f"time_{To}_y"] = y
        T[f"time_{To}_dy"] = dy
        T[f"time_{To}_dx"] = dx
    xp = torch.randn(2, 3, 7, 9)
    T["pool_x"] = xp
    for k in (2, 3):
        y, dy, (dx,) = grads(lambda v: F.avg_pool2d(v, k), [xp])
        T[f"pool{k}_y"] = y
        T[f"pool{k}_dy"] = dy
        T[f"pool{k}_dx"] = dx
        y, dy, (dx,) = grads(lambda v: v[:, :, ::k, ::k], [xp])
        T[f"stride{k}_y"] = y
        T[f"stride{k}_dy"] = dy
        T[f"stride{k}_dx"] = dx
    save(os.path.join(OUT, "ops_resize.safetensors"), T)


def timestep_embedding(timesteps, dim, flip_sin_to_cos, downscale_freq_shift, max_period=10000, scale=1):
    """diffusers.models.embeddings.get_timestep_embedding, written from its documented formula."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32)
    exponent = exponent / (half - downscale_freq_shift)
    emb = torch.exp(exponent)
    emb = timesteps[:, None].float() * emb[None, :]
    emb = scale * emb
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


def misc():
    T = {}
    t = torch.tensor([0.0, 1.0, 17.5, 999.0, 500.0])
    T["t"] = t
    T["temb_320_flip"] = timestep_embedding(t, 320, True, 0.0)
    T["temb_33_noflip"] = timestep_embedding(t, 33, False, 1.0)
    T["temb_64_flip_mp"] = timestep_embedding(t, 64, True, 1.0, max_period=1000)
    p = torch.randn(4, 3, 5, 5)
    tg = torch.randn(4, 3, 5, 5)
    w = torch.rand(4) + 0.5
    T.update({"pred": p, "target": tg, "weight": w})
    for name, fn in (
        ("mse", lambda a: F.mse_loss(a, tg)),
        ("mse_w", lambda a: (w[:, None, None, None] * (a - tg) ** 2).mean()),
        ("l1", lambda a: F.l1_loss(a, tg)),
    ):
        y, _, (dx,) = grads(fn, [p], torch.tensor(0.75))
        T[f"{name}_loss"] = y.reshape(1)
        T[f"{name}_dpred"] = dx  # for dloss = 0.75
    x = torch.randn(3, 4, 5, 6)
    T["sum_x"] = x
    for d in range(4):
        T[f"sum_dim{d}"] = x.sum(dim=d)
    save(os.path.join(OUT, "ops_misc.safetensors"), T)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    norm()
    act()
    resize()
    misc()
