#!/usr/bin/python3
"""llm.c-style reference for backpropagation through UNet3DConditionModel.

Runs with Debian's torch (/usr/bin/python3, torch 1.13); diffusers is not installed, so this file
defines the diffusers 0.25 UNet3DConditionModel itself (module and parameter names equal the
diffusers state-dict names), following shared/fixtures/diffusers/README.md:
  - heads = C / attention_head_dim of width attention_head_dim; transformer_in: 8 heads;
  - GroupNorm over all frames in the temporal layers, per frame in resnets / spatial transformers;
  - Transformer2DModel with linear proj_in/out; GEGLU feed-forward (exact gelu);
  - TransformerTemporalModel: self-attention over frames twice, no text.

1. Checks the module against the diffusers fixture: loads shared/fixtures/diffusers/unet3d weights,
   runs io_case0 and compares out.sample (must be within 1e-4 of max |ref|).
2. For a tiny config (block_out_channels (8,16), CrossAttnDown+Down / Up+CrossAttnUp,
   layers_per_block 1, groups 4, attention_head_dim 4, cross_attention_dim 8) with random weights
   (matrices N(0,1)/sqrt(fan_in), norm weights 1+0.1N, biases 0.1N) and a fixed batch
   (sample (2,4,3,4,4), timesteps [981, 37], text (2,5,8), target (2,4,3,4,4)) it writes
   tests/data/unet3d_grad.safetensors with
     every parameter under its own name (float32; the model is run in float64 on these values),
     input.sample, input.timesteps, input.text, input.target,
     out.sample, loss ([1], MSE mean((out - target)^2)), grad.<name> for every parameter,
     sgd.losses (10): the loss before each of 10 plain SGD steps p -= lr * grad, sgd.lr ([1]).
Usage: /usr/bin/python3 dev/ref_unet3d_grad.py [fixtures_dir]"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------- safetensors by hand
def st_read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    dt = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "F16": np.float16}
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[a:b], dtype=dt[v["dtype"]]).reshape(v["shape"]).copy())
    return out


def st_write(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, t in tensors.items():
        b = t.detach().float().contiguous().numpy().tobytes()
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


# ----------------------------------------------------------------- the model
class Attention(nn.Module):
    def __init__(self, qdim, cdim, heads, dim_head):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.to_q = nn.Linear(qdim, inner, bias=False)
        self.to_k = nn.Linear(cdim, inner, bias=False)
        self.to_v = nn.Linear(cdim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, qdim), nn.Dropout(0.0)])

    def forward(self, x, ctx=None):
        ctx = x if ctx is None else ctx
        B, L, _ = x.shape
        H = self.heads
        q = self.to_q(x).view(B, L, H, -1).transpose(1, 2)
        k = self.to_k(ctx).view(B, ctx.shape[1], H, -1).transpose(1, 2)
        v = self.to_v(ctx).view(B, ctx.shape[1], H, -1).transpose(1, 2)
        p = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1)
        o = (p @ v).transpose(1, 2).reshape(B, L, -1)
        return self.to_out[0](o)


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, dim_head, cdim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, dim, heads, dim_head)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, cdim if cdim else dim, heads, dim_head)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, ctx=None):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), ctx) + x
        return self.ff(self.norm3(x)) + x


class Transformer2D(nn.Module):  # use_linear_projection=True, per-frame GroupNorm
    def __init__(self, C, heads, dim_head, cdim, groups):
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(groups, C, eps=1e-6)
        self.proj_in = nn.Linear(C, inner)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(inner, heads, dim_head, cdim)])
        self.proj_out = nn.Linear(inner, C)

    def forward(self, x, ctx):
        BF, C, H, W = x.shape
        h = self.norm(x).permute(0, 2, 3, 1).reshape(BF, H * W, C)
        h = self.proj_in(h)
        for b in self.transformer_blocks:
            h = b(h, ctx)
        h = self.proj_out(h).reshape(BF, H, W, -1).permute(0, 3, 1, 2)
        return h + x


class TransformerTemporal(nn.Module):  # GroupNorm across frames, self-attention over frames twice
    def __init__(self, C, heads, dim_head, groups):
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(groups, C, eps=1e-6)
        self.proj_in = nn.Linear(C, inner)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(inner, heads, dim_head, 0)])
        self.proj_out = nn.Linear(inner, C)

    def forward(self, x, T):
        BF, C, H, W = x.shape
        B = BF // T
        h = x.reshape(B, T, C, H, W).permute(0, 2, 1, 3, 4)
        h = self.norm(h)
        h = h.permute(0, 3, 4, 2, 1).reshape(B * H * W, T, C)
        h = self.proj_in(h)
        for b in self.transformer_blocks:
            h = b(h, None)
        h = self.proj_out(h)
        h = h.reshape(B, H, W, T, C).permute(0, 3, 4, 1, 2).reshape(BF, C, H, W)
        return h + x


class TemporalConv(nn.Module):
    def __init__(self, C, groups):
        super().__init__()
        def conv():
            return nn.Conv3d(C, C, (3, 1, 1), padding=(1, 0, 0))
        self.conv1 = nn.Sequential(nn.GroupNorm(groups, C), nn.SiLU(), conv())
        self.conv2 = nn.Sequential(nn.GroupNorm(groups, C), nn.SiLU(), nn.Dropout(0.0), conv())
        self.conv3 = nn.Sequential(nn.GroupNorm(groups, C), nn.SiLU(), nn.Dropout(0.0), conv())
        self.conv4 = nn.Sequential(nn.GroupNorm(groups, C), nn.SiLU(), nn.Dropout(0.0), conv())

    def forward(self, x, T):
        BF, C, H, W = x.shape
        h = x.reshape(BF // T, T, C, H, W).permute(0, 2, 1, 3, 4)
        idt = h
        h = self.conv4(self.conv3(self.conv2(self.conv1(h))))
        h = idt + h
        return h.permute(0, 2, 1, 3, 4).reshape(BF, C, H, W)


class Resnet(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps, scale=1.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.scale = scale

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        s = self.conv_shortcut(x) if self.conv_shortcut is not None else x
        return (s + h) / self.scale


class Sampler(nn.Module):
    def __init__(self, C, down, padding=1):
        super().__init__()
        self.down = down
        self.conv = nn.Conv2d(C, C, 3, stride=2 if down else 1, padding=padding if down else 1)

    def forward(self, x, size=None):
        if not self.down:
            x = F.interpolate(x, size=size, mode="nearest") if size is not None else \
                F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x)


class Block(nn.Module):
    def __init__(self, kind, n, cin, cout, prev, temb, cfg, sampler):
        super().__init__()
        G, eps, hd = cfg["norm_num_groups"], cfg["norm_eps"], cfg["attention_head_dim"]
        self.up = kind.startswith("Up") or kind.startswith("CrossAttnUp")
        self.attn = kind.startswith("CrossAttn")
        rs = []
        for i in range(n):
            if self.up:
                skip = cin if i == n - 1 else cout
                rin = (prev if i == 0 else cout) + skip
            else:
                rin = cin if i == 0 else cout
            rs.append(Resnet(rin, cout, temb, G, eps))
        self.resnets = nn.ModuleList(rs)
        self.temp_convs = nn.ModuleList([TemporalConv(cout, G) for _ in range(n)])
        if self.attn:
            self.attentions = nn.ModuleList(
                [Transformer2D(cout, cout // hd, hd, cfg["cross_attention_dim"], G) for _ in range(n)])
            self.temp_attentions = nn.ModuleList([TransformerTemporal(cout, cout // hd, hd, G) for _ in range(n)])
        if sampler:
            if self.up:
                self.upsamplers = nn.ModuleList([Sampler(cout, False)])
            else:
                self.downsamplers = nn.ModuleList([Sampler(cout, True, cfg["downsample_padding"])])
        self.sampler = sampler

    def layer(self, i, h, temb, ctx, T):
        h = self.resnets[i](h, temb)
        h = self.temp_convs[i](h, T)
        if self.attn:
            h = self.attentions[i](h, ctx)
            h = self.temp_attentions[i](h, T)
        return h


class Mid(nn.Module):
    def __init__(self, C, temb, cfg):
        super().__init__()
        G, eps, hd = cfg["norm_num_groups"], cfg["norm_eps"], cfg["attention_head_dim"]
        sc = cfg.get("mid_block_scale_factor", 1.0)
        self.resnets = nn.ModuleList([Resnet(C, C, temb, G, eps, sc) for _ in range(2)])
        self.temp_convs = nn.ModuleList([TemporalConv(C, G) for _ in range(2)])
        self.attentions = nn.ModuleList([Transformer2D(C, C // hd, hd, cfg["cross_attention_dim"], G)])
        self.temp_attentions = nn.ModuleList([TransformerTemporal(C, C // hd, hd, G)])

    def forward(self, h, temb, ctx, T):
        h = self.temp_convs[0](self.resnets[0](h, temb), T)
        h = self.temp_attentions[0](self.attentions[0](h, ctx), T)
        return self.temp_convs[1](self.resnets[1](h, temb), T)


class TimeEmbedding(nn.Module):
    def __init__(self, C0):
        super().__init__()
        self.linear_1 = nn.Linear(C0, 4 * C0)
        self.linear_2 = nn.Linear(4 * C0, 4 * C0)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class UNet3D(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        boc = cfg["block_out_channels"]
        C0, nb, G, hd = boc[0], len(boc), cfg["norm_num_groups"], cfg["attention_head_dim"]
        temb = 4 * C0
        self.conv_in = nn.Conv2d(cfg["in_channels"], C0, 3, padding=1)
        self.time_embedding = TimeEmbedding(C0)
        self.transformer_in = TransformerTemporal(C0, 8, hd, G)
        L = cfg["layers_per_block"]
        downs, out = [], C0
        for i, kind in enumerate(cfg["down_block_types"]):
            cin, out = out, boc[i]
            downs.append(Block(kind, L, cin, out, 0, temb, cfg, i != nb - 1))
        self.down_blocks = nn.ModuleList(downs)
        self.mid_block = Mid(boc[-1], temb, cfg)
        ups, out = [], boc[-1]
        rev = list(reversed(boc))
        for i, kind in enumerate(cfg["up_block_types"]):
            prev, out = out, rev[i]
            cin = rev[min(i + 1, nb - 1)]
            ups.append(Block(kind, L + 1, cin, out, prev, temb, cfg, i != nb - 1))
        self.up_blocks = nn.ModuleList(ups)
        self.conv_norm_out = nn.GroupNorm(G, C0, eps=cfg["norm_eps"])
        self.conv_out = nn.Conv2d(C0, cfg["out_channels"], 3, padding=1)

    def forward(self, sample, timesteps, text):
        B, C, T, H, W = sample.shape
        C0 = self.cfg["block_out_channels"][0]
        half = C0 // 2
        ex = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half).to(sample.dtype)
        e = timesteps.to(sample.dtype)[:, None] * ex[None]
        tp = torch.cat([torch.cos(e), torch.sin(e)], dim=-1)  # flip_sin_to_cos
        emb = self.time_embedding(tp).repeat_interleave(T, dim=0)
        ctx = text.repeat_interleave(T, dim=0)
        h = sample.permute(0, 2, 1, 3, 4).reshape(B * T, C, H, W)
        h = self.conv_in(h)
        h = self.transformer_in(h, T)
        skips = [h]
        for b in self.down_blocks:
            for i in range(len(b.resnets)):
                h = b.layer(i, h, emb, ctx, T)
                skips.append(h)
            if b.sampler:
                h = b.downsamplers[0](h)
                skips.append(h)
        h = self.mid_block(h, emb, ctx, T)
        for b in self.up_blocks:
            for i in range(len(b.resnets)):
                h = torch.cat([h, skips.pop()], dim=1)
                h = b.layer(i, h, emb, ctx, T)
            if b.sampler:
                h = b.upsamplers[0](h, skips[-1].shape[2:])
        h = self.conv_out(F.silu(self.conv_norm_out(h)))
        return h.reshape(B, T, -1, H, W).permute(0, 2, 1, 3, 4)


def load_into(model, weights):
    sd = model.state_dict()
    missing = [k for k in sd if k not in weights]
    extra = [k for k in weights if k not in sd]
    bad = [k for k in sd if k in weights and tuple(sd[k].shape) != tuple(weights[k].shape)]
    assert not missing and not extra and not bad, (missing[:5], extra[:5], bad[:5])
    model.load_state_dict({k: weights[k].to(sd[k].dtype) for k in sd})


def check_fixture(fx):
    d = os.path.join(fx, "diffusers", "unet3d")
    cfg = json.load(open(os.path.join(d, "config.json")))
    m = UNet3D(cfg).eval()
    load_into(m, st_read(os.path.join(d, "weights.safetensors")))
    io = st_read(os.path.join(d, "io_case0.safetensors"))
    with torch.no_grad():
        B = io["sample"].shape[0]
        out = m(io["sample"], io["timestep"].reshape(-1).expand(B), io["encoder_hidden_states"])
    ref = io["out.sample"]
    err = (out - ref).abs().max().item() / ref.abs().max().item()
    print(f"fixture unet3d out.sample: max err / max ref = {err:.3g}")
    assert err < 1e-4, err


def main():
    fx = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                                             "fixtures")
    torch.set_num_threads(1)
    check_fixture(fx)

    cfg = {"in_channels": 4, "out_channels": 4, "block_out_channels": [8, 16],
           "down_block_types": ["CrossAttnDownBlock3D", "DownBlock3D"],
           "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D"], "layers_per_block": 1,
           "downsample_padding": 1, "mid_block_scale_factor": 1.0, "norm_num_groups": 4, "norm_eps": 1e-5,
           "cross_attention_dim": 8, "attention_head_dim": 4}
    g = torch.Generator().manual_seed(1234)
    m = UNet3D(cfg)
    weights = {}
    for name, p in m.named_parameters():
        if p.dim() >= 2:
            w = torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel())
        elif name.endswith("weight"):
            w = 1 + 0.1 * torch.randn(p.shape, generator=g)
        else:
            w = 0.1 * torch.randn(p.shape, generator=g)
        weights[name] = w.float()
    m = m.double()
    load_into(m, weights)
    sample = torch.randn(2, 4, 3, 4, 4, generator=g).float()
    timesteps = torch.tensor([981.0, 37.0])
    text = torch.randn(2, 5, 8, generator=g).float()
    target = torch.randn(2, 4, 3, 4, 4, generator=g).float()

    def loss_fn():
        out = m(sample.double(), timesteps.double(), text.double())
        return out, ((out - target.double()) ** 2).mean()

    out, loss = loss_fn()
    m.zero_grad()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in m.named_parameters()}
    lr = 0.01
    losses = []
    for step in range(10):
        m.zero_grad()
        _, l = loss_fn()
        l.backward()
        losses.append(l.item())
        with torch.no_grad():
            for p in m.parameters():
                p -= lr * p.grad
    print("loss", loss.item(), "sgd losses", losses)
    assert losses[-1] < losses[0]
    t = dict(weights)
    t["input.sample"] = sample
    t["input.timesteps"] = timesteps
    t["input.text"] = text
    t["input.target"] = target
    t["out.sample"] = out
    t["loss"] = loss.reshape(1)
    for n, gr in grads.items():
        t["grad." + n] = gr
    t["sgd.losses"] = torch.tensor(losses)
    t["sgd.lr"] = torch.tensor([lr])
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "unet3d_grad.safetensors")
    st_write(path, t, {"generator": "dev/ref_unet3d_grad.py (torch %s, float64 math on float32 weights)"
                       % torch.__version__, "config": json.dumps(cfg)})
    print("wrote", path, os.path.getsize(path), "bytes,", len(weights), "parameters")


if __name__ == "__main__":
    main()
