#!/usr/bin/python3
"""PyTorch side of bench/bench_e2e_vs_torch.sh: a diffusers 0.25 TextToVideoSDPipeline
(ModelScope text-to-video structure) written out in plain torch, run on the CPU.

Debian's torch 1.13 (/usr/bin/python3); diffusers and transformers are not installed, so the
models are defined here (the UNet3D is dev/ref_unet3d_grad.py's). Module and parameter names
equal the diffusers/transformers state-dict names:
  - CLIPTextModel: token + position embeddings, pre-LN layers with a causal mask (no padding
    mask, as the pipeline calls it), gelu or quick_gelu MLP, final layer norm -> last_hidden_state;
  - AutoencoderKL (SD): the decoder is run (post_quant_conv, conv_in, mid block with one
    single-head attention, up blocks with nearest x2 upsampling, GroupNorm eps 1e-6); the encoder
    is defined for its parameter names;
  - DDIM (eps, eta 0): betas scaled_linear in float32, "leading" timesteps k*(1000//N) +
    steps_offset, alphas_cumprod[0] as the last step's previous alpha (set_alpha_to_one false);
  - CFG batch [negative, positive], noise = u + g*(c - u), scheduler.step on (B*F, C, h, w);
    the VAE decodes latents * (1/scaling_factor) as a batch of 2-D images (in chunks of
    --decode-chunk frames; GroupNorm is per image so chunking does not change the numbers).

Modes:
  --check-fixture [DIR]   run shared/fixtures/diffusers/pipeline_t2v (weights from ../unet3d,
                          ../vae, ../clip_text_gelu, its ids and initial latents) and print the
                          errors of prompt embeds, every step, final_latents, video, frames
                          (README tolerances; exit 1 when one is exceeded).
  --make-latents FILE --model DIR --frames F --size S [--seed N]
                          write N(0,1) initial latents (1, C, F, S/f, S/f) as "latents" (torch
                          generator, float32) for `kinema generate --latents FILE` and this script.
  --flops --model DIR --frames F --size S [--steps N]
                          count FLOPs (convolutions and matrix products, 2 per multiply-add) of the
                          pipeline on the meta device (no weights needed: configs only).
  default (a run)         --model DIR --ids IDS --latents FILE [--steps 25] [--guidance 9]
                          [--threads N] [--decode-chunk K] [--out-latents FILE] [--out-text FILE]
                          [--out-z FILE (the VAE input: latents / scaling_factor, (B*F, C, h, w))]
                          [--compare-latents FILE] [--compare-frames 'DIR/frame%d.png']
                          [--compare-text FILE]
      IDS: a safetensors with input_ids (2, 77) I64, rows [prompt, negative] (what --ids-from
      writes), or two text files "--ids P.txt,N.txt" holding what `kinema tokenize --pad 77
      --pad-token !` printed.
  --ids-from P.txt,N.txt --ids-out FILE   convert `kinema tokenize` output to such a safetensors.

Prints "RESULT torch key=value ..." lines: load_s, text_s (both prompts), unet_s_per_step (mean
over the steps), unet_s, vae_s, run_s (text + steps + decode), cpu_s (process user+sys),
peak_rss_mib (VmHWM: torch, the weights read straight into the parameters, activations), and the
cross-check errors."""
import argparse
import contextlib
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_unet3d_grad import UNet3D  # noqa: E402

# ----------------------------------------------------------------- safetensors by hand
NP = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32, "U8": np.uint8}
TORCH_NAME = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.int64: "I64",
              torch.int32: "I32", torch.uint8: "U8"}


def st_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


def st_read(path):
    hdr, base = st_header(path)
    out = {}
    with open(path, "rb") as f:
        for k, v in hdr.items():
            if k == "__metadata__":
                continue
            a, b = v["data_offsets"]
            f.seek(base + a)
            arr = np.frombuffer(f.read(b - a), dtype=NP[v["dtype"]]).reshape(v["shape"])
            out[k] = torch.from_numpy(arr.copy())
    return out


def st_write(path, tensors, meta):
    header, off = {"__metadata__": meta}, 0
    for name, t in tensors.items():
        n = t.numel() * t.element_size()
        header[name] = {"dtype": TORCH_NAME[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for t in tensors.values():
            f.write(t.detach().contiguous().numpy().tobytes())


def st_load_into(module, path, prefix=""):
    """Reads every parameter of module from the safetensors file straight into its storage (no
    second copy of the weights). The file's names must equal the state dict's (plus prefix);
    transformers' position_ids buffer is ignored."""
    hdr, base = st_header(path)
    names = {k for k in hdr if k != "__metadata__" and not k.endswith("position_ids")}
    sd = module.state_dict()
    want = {prefix + k for k in sd}
    if names != want:
        raise SystemExit(f"{path}: missing {sorted(want - names)[:4]}, unexpected {sorted(names - want)[:4]}")
    with open(path, "rb") as f, torch.no_grad():
        for k, t in sd.items():
            v = hdr[prefix + k]
            if list(v["shape"]) != list(t.shape):
                raise SystemExit(f"{path}: {k} is {v['shape']}, the model wants {list(t.shape)}")
            a, b = v["data_offsets"]
            f.seek(base + a)
            if v["dtype"] == "F32" and t.dtype == torch.float32 and t.is_contiguous():
                mv = memoryview(t.numpy()).cast("B")
                if f.readinto(mv) != b - a:
                    raise SystemExit(f"{path}: {k}: short read")
            else:
                arr = np.frombuffer(f.read(b - a), dtype=NP[v["dtype"]]).reshape(v["shape"])
                t.copy_(torch.from_numpy(arr.astype(np.float32)))


# ----------------------------------------------------------------- CLIP text encoder (transformers 4.33)
class CLIPAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.scale = self.hd ** -0.5
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.v_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, mask):
        B, L, D = x.shape
        H, hd = self.heads, self.hd

        def shape(t):
            return t.view(B, L, H, hd).transpose(1, 2).reshape(B * H, L, hd)
        q = shape(self.q_proj(x) * self.scale)
        k, v = shape(self.k_proj(x)), shape(self.v_proj(x))
        w = torch.bmm(q, k.transpose(1, 2))
        w = (w.view(B, H, L, L) + mask).view(B * H, L, L)
        o = torch.bmm(torch.softmax(w, dim=-1), v)
        return self.out_proj(o.view(B, H, L, hd).transpose(1, 2).reshape(B, L, D))


class CLIPMLP(nn.Module):
    def __init__(self, d, inner, act):
        super().__init__()
        self.act = act
        self.fc1, self.fc2 = nn.Linear(d, inner), nn.Linear(inner, d)

    def forward(self, x):
        h = self.fc1(x)
        h = F.gelu(h) if self.act == "gelu" else h * torch.sigmoid(1.702 * h)
        return self.fc2(h)


class CLIPLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, eps = c["hidden_size"], c.get("layer_norm_eps", 1e-5)
        self.self_attn = CLIPAttention(d, c["num_attention_heads"])
        self.layer_norm1 = nn.LayerNorm(d, eps=eps)
        self.mlp = CLIPMLP(d, c["intermediate_size"], c.get("hidden_act", "quick_gelu"))
        self.layer_norm2 = nn.LayerNorm(d, eps=eps)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPTextModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["hidden_size"]
        tm = nn.Module()
        tm.embeddings = nn.Module()
        tm.embeddings.token_embedding = nn.Embedding(c["vocab_size"], d)
        tm.embeddings.position_embedding = nn.Embedding(c["max_position_embeddings"], d)
        tm.encoder = nn.Module()
        tm.encoder.layers = nn.ModuleList([CLIPLayer(c) for _ in range(c["num_hidden_layers"])])
        tm.final_layer_norm = nn.LayerNorm(d, eps=c.get("layer_norm_eps", 1e-5))
        self.text_model = tm

    def forward(self, ids):
        tm = self.text_model
        B, L = ids.shape
        dev = ids.device
        pos = torch.arange(L, device=dev)[None]
        x = tm.embeddings.token_embedding(ids) + tm.embeddings.position_embedding(pos)
        mask = torch.full((L, L), torch.finfo(x.dtype).min, device=dev)
        c = torch.arange(L, device=dev)
        mask.masked_fill_(c < (c + 1).view(L, 1), 0)
        mask = mask.to(x.dtype)[None, None]
        for layer in tm.encoder.layers:
            x = layer(x, mask)
        return tm.final_layer_norm(x)


# ----------------------------------------------------------------- AutoencoderKL (diffusers 0.25, SD structure)
class VAEResnet(nn.Module):
    def __init__(self, cin, cout, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class VAEAttention(nn.Module):  # one head of width C, GroupNorm inside, residual
    def __init__(self, C, groups):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, C, eps=1e-6)
        self.to_q, self.to_k, self.to_v = nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C)
        self.to_out = nn.ModuleList([nn.Linear(C, C), nn.Dropout(0.0)])

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.group_norm(x.view(B, C, H * W)).transpose(1, 2)
        q, k, v = self.to_q(h), self.to_k(h), self.to_v(h)
        # diffusers: baddbmm(empty, q, k^T, beta=0, alpha=scale); beta=1 on zeros is the same math
        s = torch.baddbmm(torch.zeros(B, H * W, H * W, dtype=q.dtype, device=q.device), q, k.transpose(-1, -2),
                          beta=1, alpha=C ** -0.5)
        o = torch.bmm(torch.softmax(s.float(), dim=-1).to(v.dtype), v)
        o = self.to_out[0](o)
        return o.transpose(-1, -2).reshape(B, C, H, W) + x


class VAEMid(nn.Module):
    def __init__(self, C, groups):
        super().__init__()
        self.resnets = nn.ModuleList([VAEResnet(C, C, groups), VAEResnet(C, C, groups)])
        self.attentions = nn.ModuleList([VAEAttention(C, groups)])

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class Conv(nn.Module):  # holds a .conv, as Up/Downsample2D
    def __init__(self, C, stride):
        super().__init__()
        self.conv = nn.Conv2d(C, C, 3, stride=stride, padding=1 if stride == 1 else 0)


class VAEBlock(nn.Module):
    def __init__(self, n, cin, cout, groups, sampler, up):
        super().__init__()
        self.resnets = nn.ModuleList([VAEResnet(cin if i == 0 else cout, cout, groups) for i in range(n)])
        if sampler:
            if up:
                self.upsamplers = nn.ModuleList([Conv(cout, 1)])
            else:
                self.downsamplers = nn.ModuleList([Conv(cout, 2)])
        self.sampler, self.up = sampler, up

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        if self.sampler and self.up:
            x = self.upsamplers[0].conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        elif self.sampler:
            x = self.downsamplers[0].conv(F.pad(x, (0, 1, 0, 1)))
        return x


class VAEEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        boc, G, L = c["block_out_channels"], c["norm_num_groups"], c["layers_per_block"]
        self.conv_in = nn.Conv2d(c["in_channels"], boc[0], 3, padding=1)
        self.down_blocks = nn.ModuleList([VAEBlock(L, boc[max(i - 1, 0)], boc[i], G, i != len(boc) - 1, False)
                                          for i in range(len(boc))])
        self.mid_block = VAEMid(boc[-1], G)
        self.conv_norm_out = nn.GroupNorm(G, boc[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(boc[-1], 2 * c["latent_channels"], 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for b in self.down_blocks:
            h = b(h)
        return self.conv_out(F.silu(self.conv_norm_out(self.mid_block(h))))


class VAEDecoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        boc, G, L = c["block_out_channels"], c["norm_num_groups"], c["layers_per_block"]
        rev = list(reversed(boc))
        self.conv_in = nn.Conv2d(c["latent_channels"], rev[0], 3, padding=1)
        self.mid_block = VAEMid(rev[0], G)
        self.up_blocks = nn.ModuleList([VAEBlock(L + 1, rev[max(i - 1, 0)], rev[i], G, i != len(rev) - 1, True)
                                        for i in range(len(rev))])
        self.conv_norm_out = nn.GroupNorm(G, boc[0], eps=1e-6)
        self.conv_out = nn.Conv2d(boc[0], c["out_channels"], 3, padding=1)

    def forward(self, z):
        h = self.mid_block(self.conv_in(z))
        for b in self.up_blocks:
            h = b(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.cfg = c
        Lc = c["latent_channels"]
        self.encoder = VAEEncoder(c)
        self.decoder = VAEDecoder(c)
        self.quant_conv = nn.Conv2d(2 * Lc, 2 * Lc, 1)
        self.post_quant_conv = nn.Conv2d(Lc, Lc, 1)

    def decode(self, z):  # no division by the scaling factor (the pipeline does that)
        return self.decoder(self.post_quant_conv(z))


# ----------------------------------------------------------------- DDIM (diffusers 0.25, eta 0, epsilon)
class DDIM:
    def __init__(self, c):
        if c.get("beta_schedule", "linear") == "scaled_linear":
            betas = torch.linspace(c["beta_start"] ** 0.5, c["beta_end"] ** 0.5, c["num_train_timesteps"],
                                   dtype=torch.float32) ** 2
        elif c.get("beta_schedule") == "linear":
            betas = torch.linspace(c["beta_start"], c["beta_end"], c["num_train_timesteps"], dtype=torch.float32)
        else:
            raise SystemExit(f"DDIM: beta_schedule {c.get('beta_schedule')} not supported here")
        if c.get("prediction_type", "epsilon") != "epsilon" or c.get("timestep_spacing", "leading") != "leading" \
                or c.get("clip_sample", False) or c.get("thresholding", False):
            raise SystemExit("DDIM: only epsilon, leading spacing, no clipping/thresholding are written here")
        self.c = c
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.final_alpha_cumprod = torch.tensor(1.0) if c.get("set_alpha_to_one", True) else self.alphas_cumprod[0]
        self.init_noise_sigma = 1.0

    def set_timesteps(self, n):
        self.n = n
        ratio = self.c["num_train_timesteps"] // n
        ts = (np.arange(0, n) * ratio).round()[::-1].copy().astype(np.int64) + self.c.get("steps_offset", 0)
        self.timesteps = torch.from_numpy(ts)
        return self.timesteps

    def step(self, eps, t, x):
        prev = int(t) - self.c["num_train_timesteps"] // self.n
        a_t = self.alphas_cumprod[int(t)]
        a_prev = self.alphas_cumprod[prev] if prev >= 0 else self.final_alpha_cumprod
        b_t = 1 - a_t
        x0 = (x - b_t ** 0.5 * eps) / a_t ** 0.5
        return a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps


# ----------------------------------------------------------------- the pipeline
class Pipeline:
    def __init__(self, unet_cfg, vae_cfg, text_cfg, sched_cfg):
        self.unet = UNet3D(unet_cfg).eval()
        self.vae = AutoencoderKL(vae_cfg).eval()
        self.text = CLIPTextModel(text_cfg).eval()
        self.sched = DDIM(sched_cfg)
        self.scaling = vae_cfg.get("scaling_factor", 0.18215)

    def load(self, unet_w, vae_w, text_w):
        st_load_into(self.unet, unet_w)
        st_load_into(self.vae, vae_w)
        st_load_into(self.text, text_w)

    @torch.no_grad()
    def __call__(self, ids_pos, ids_neg, latents, steps, guidance, decode_chunk=0, trace=None, times=None):
        times = {} if times is None else times
        t0 = time.perf_counter()
        pos = self.text(ids_pos)  # diffusers encodes the prompt and the negative prompt separately
        neg = self.text(ids_neg)
        text = torch.cat([neg, pos]) if guidance > 1 else pos
        times["text"] = time.perf_counter() - t0
        if trace is not None:
            trace["prompt_embeds"], trace["negative_prompt_embeds"] = pos, neg
        ts = self.sched.set_timesteps(steps)
        lat = latents * self.sched.init_noise_sigma
        B, C, Fr, h, w = lat.shape
        t1 = time.perf_counter()
        step_times = []
        for i, t in enumerate(ts):
            s0 = time.perf_counter()
            inp = torch.cat([lat] * 2) if guidance > 1 else lat
            out = self.unet(inp, torch.full((inp.shape[0],), int(t), dtype=torch.int64), text)
            if guidance > 1:
                u, c = out.chunk(2)
                eps = u + guidance * (c - u)
            else:
                eps = out
            x = lat.permute(0, 2, 1, 3, 4).reshape(B * Fr, C, h, w)
            e = eps.permute(0, 2, 1, 3, 4).reshape(B * Fr, C, h, w)
            x = self.sched.step(e, t, x)
            lat = x[None].reshape(B, Fr, C, h, w).permute(0, 2, 1, 3, 4)
            step_times.append(time.perf_counter() - s0)
            if trace is not None:
                trace[f"step{i:03d}.unet_output"] = out
                trace[f"step{i:03d}.latents_after"] = lat
        times["unet"] = time.perf_counter() - t1
        times["steps"] = step_times
        t2 = time.perf_counter()
        video = self.decode(lat, decode_chunk)
        times["vae"] = time.perf_counter() - t2
        return lat, video

    def decode(self, lat, chunk=0):
        B, C, Fr, h, w = lat.shape
        z = (lat * (1 / self.scaling)).permute(0, 2, 1, 3, 4).reshape(B * Fr, C, h, w)
        n = chunk if 0 < chunk < z.shape[0] else z.shape[0]
        img = torch.cat([self.vae.decode(z[i:i + n]) for i in range(0, z.shape[0], n)])
        return img[None].reshape(B, Fr, -1, img.shape[2], img.shape[3]).permute(0, 2, 1, 3, 4)


def frames_uint8(video):
    """(1, 3, F, H, W) -> (F, H, W, 3) uint8 as diffusers' 'np' output (truncation)."""
    v = ((video[0] / 2 + 0.5).clamp(0, 1) * 255).permute(1, 2, 3, 0)
    return v.numpy().astype(np.uint8)


def load_pipeline_folder(d):
    mi = json.load(open(os.path.join(d, "model_index.json")))
    for k in ("unet", "vae", "text_encoder", "scheduler"):
        if k not in mi:
            raise SystemExit(f"{d}/model_index.json: no '{k}'")
    if mi["scheduler"][1] != "DDIMScheduler":
        raise SystemExit(f"{d}: scheduler {mi['scheduler'][1]}: only DDIM is written here")
    cfg = {k: json.load(open(os.path.join(d, k, "config.json"))) for k in ("unet", "vae", "text_encoder")}
    cfg["scheduler"] = json.load(open(os.path.join(d, "scheduler", "scheduler_config.json")))
    return cfg


def folder_weights(d):
    return (os.path.join(d, "unet", "diffusion_pytorch_model.safetensors"),
            os.path.join(d, "vae", "diffusion_pytorch_model.safetensors"),
            os.path.join(d, "text_encoder", "model.safetensors"))


# ----------------------------------------------------------------- meta device: FLOPs and parameter shapes
@contextlib.contextmanager
def on_meta():
    """Modules built and run inside are on the meta device (shapes only, no memory): torch.empty and
    torch.arange make meta tensors, and Tensor.repeat_interleave (integer repeats, dim 0, which the
    meta backend lacks) is written as expand + reshape."""
    oe, oa, ori = torch.empty, torch.arange, torch.Tensor.repeat_interleave

    def empty(*a, **k):
        k["device"] = "meta"
        return oe(*a, **k)

    def arange(*a, **k):
        k["device"] = "meta"
        return oa(*a, **k)

    def rep(x, r, dim=0):
        assert isinstance(r, int) and dim == 0
        return x.unsqueeze(1).expand(x.shape[0], r, *x.shape[1:]).reshape(x.shape[0] * r, *x.shape[1:])
    torch.empty, torch.arange, torch.Tensor.repeat_interleave = empty, arange, rep
    try:
        yield
    finally:
        torch.empty, torch.arange, torch.Tensor.repeat_interleave = oe, oa, ori


try:
    from torch.utils._python_dispatch import TorchDispatchMode
except ImportError:  # pragma: no cover
    TorchDispatchMode = object


class FlopCount(TorchDispatchMode):
    """2 FLOPs per multiply-add of convolutions and (batched) matrix products."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        n = func.overloadpacket.__name__
        if n in ("mm", "addmm"):
            a, b = (args[0], args[1]) if n == "mm" else (args[1], args[2])
            self.flops += 2 * a.shape[0] * a.shape[1] * b.shape[1]
        elif n in ("bmm", "baddbmm"):
            a, b = (args[0], args[1]) if n == "bmm" else (args[1], args[2])
            self.flops += 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
        elif n == "convolution":
            self.flops += 2 * out.numel() * args[1][0].numel()
        return out


def count_flops(cfg, frames, size, steps, guidance=9.0, text_len=77):
    with on_meta():
        unet, vae, text = UNet3D(cfg["unet"]), AutoencoderKL(cfg["vae"]), CLIPTextModel(cfg["text_encoder"])
        f = 2 ** (len(cfg["vae"]["block_out_channels"]) - 1)
        Bc = 2 if guidance > 1 else 1
        C, D = cfg["unet"]["in_channels"], cfg["text_encoder"]["hidden_size"]
        res = {}
        with torch.no_grad():
            with FlopCount() as fc:
                for _ in range(Bc):
                    text(torch.zeros(1, text_len, dtype=torch.int64, device="meta"))
            res["text"] = fc.flops
            with FlopCount() as fc:
                unet(torch.empty(Bc, C, frames, size // f, size // f), torch.empty(Bc),
                     torch.empty(Bc, text_len, D))
            res["unet_step"] = fc.flops
            with FlopCount() as fc:
                vae.decode(torch.empty(frames, cfg["vae"]["latent_channels"], size // f, size // f))
            res["vae"] = fc.flops
    res["unet"] = res["unet_step"] * steps
    res["total"] = res["text"] + res["unet"] + res["vae"]
    res["params"] = {"unet": sum(p.numel() for p in unet.parameters()),
                     "vae": sum(p.numel() for p in vae.parameters()),
                     "text_encoder": sum(p.numel() for p in text.parameters())}
    return res


# ----------------------------------------------------------------- helpers
def peak_rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def cpu_s():
    t = os.times()
    return t.user + t.system


def rel_err(a, ref):
    d = (a.double() - ref.double()).abs().max().item()
    m = ref.double().abs().max().item()
    return d, m


def read_ids(spec):
    if spec.endswith(".safetensors"):
        t = st_read(spec)["input_ids"].to(torch.int64)
        if t.shape[0] != 2:
            raise SystemExit(f"{spec}: input_ids must be (2, L): [prompt, negative]")
        return t[0:1], t[1:2]
    parts = spec.split(",")
    if len(parts) != 2:
        raise SystemExit("--ids: a .safetensors file or P.txt,N.txt")
    rows = [torch.tensor([[int(x) for x in open(p).read().split()]], dtype=torch.int64) for p in parts]
    return rows[0], rows[1]


def read_png_frames(pattern, n):
    """Frames written as NAME%d.png (numbered from 0 or from 1) -> (n, H, W, 3) uint8."""
    from PIL import Image
    start = 0 if os.path.exists(pattern % 0) else 1
    return np.stack([np.asarray(Image.open(pattern % (start + i)).convert("RGB")) for i in range(n)])


# ----------------------------------------------------------------- modes
def check_fixture(fx):
    d = os.path.join(fx, "pipeline_t2v")
    pj = json.load(open(os.path.join(d, "pipeline.json")))
    cfg = {"unet": json.load(open(os.path.join(fx, "unet3d", "config.json"))),
           "vae": json.load(open(os.path.join(fx, "vae", "config.json"))),
           "text_encoder": json.load(open(os.path.join(fx, "clip_text_gelu", "config.json"))),
           "scheduler": pj["components"]["scheduler"]["config"]}
    p = Pipeline(cfg["unet"], cfg["vae"], cfg["text_encoder"], cfg["scheduler"])
    p.load(os.path.join(fx, "unet3d", "weights.safetensors"), os.path.join(fx, "vae", "weights.safetensors"),
           os.path.join(fx, "clip_text_gelu", "weights.safetensors"))
    io = st_read(os.path.join(d, "pipeline_io.safetensors"))
    call = pj["call"]
    trace = {}
    lat, video = p(io["input_ids.prompt"], io["input_ids.negative_prompt"], io["initial_latents"],
                   call["num_inference_steps"], call["guidance_scale"], trace=trace)
    ts = p.sched.timesteps.tolist()
    ok = True

    def report(name, a, ref, tol, scale_floor=0.0):
        nonlocal ok
        d, m = rel_err(a, ref)
        lim = tol * max(m, scale_floor)
        good = d <= lim
        ok &= good
        print(f"  {name:34s} max|err| {d:.3g}  max|ref| {m:.3g}  err/ref {d / max(m, 1e-30):.3g}  "
              f"(limit {lim:.3g}) {'ok' if good else 'FAIL'}")
    print(f"pipeline_t2v: timesteps {ts} (fixture {pj['timesteps']})")
    ok &= ts == pj["timesteps"]
    report("prompt_embeds", trace["prompt_embeds"], io["prompt_embeds"], 1e-4, 1.0)
    report("negative_prompt_embeds", trace["negative_prompt_embeds"], io["negative_prompt_embeds"], 1e-4, 1.0)
    for i in range(len(ts)):
        report(f"step{i:03d}.unet_output", trace[f"step{i:03d}.unet_output"], io[f"step{i:03d}.unet_output"], 1e-3)
        report(f"step{i:03d}.latents_after", trace[f"step{i:03d}.latents_after"],
               io[f"step{i:03d}.latents_after"], 1e-3)
    report("final_latents", lat, io["final_latents"], 1e-3)
    report("video", video, io["video"], 1e-3)
    fr = torch.from_numpy(frames_uint8(video).astype(np.int32))
    ref = io["frames_uint8"].to(torch.int32)
    d = (fr - ref).abs().max().item()
    print(f"  {'frames_uint8':34s} max|diff| {d} (limit 1) {'ok' if d <= 1 else 'FAIL'}")
    ok &= d <= 1
    print("fixture pipeline_t2v:", "ok" if ok else "FAILED")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check-fixture", nargs="?", const="", default=None, metavar="DIR")
    ap.add_argument("--make-latents", metavar="FILE")
    ap.add_argument("--flops", action="store_true")
    ap.add_argument("--ids-from")
    ap.add_argument("--ids-out")
    ap.add_argument("--model")
    ap.add_argument("--ids")
    ap.add_argument("--latents")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=9.0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--decode-chunk", type=int, default=0, help="frames per VAE decode batch (0: all, as diffusers)")
    ap.add_argument("--out-latents")
    ap.add_argument("--out-text")
    ap.add_argument("--out-z")
    ap.add_argument("--compare-latents")
    ap.add_argument("--compare-frames")
    ap.add_argument("--compare-text")
    a = ap.parse_args()
    torch.set_num_threads(max(1, a.threads))

    if a.check_fixture is not None:
        fx = a.check_fixture or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                                             "fixtures", "diffusers")
        return check_fixture(fx)
    if a.ids_from:
        if not a.ids_out:
            ap.error("--ids-from needs --ids-out")
        p, n = read_ids(a.ids_from)
        st_write(a.ids_out, {"input_ids": torch.cat([p, n])}, {"generator": "dev/torch_pipeline.py",
                                                                "rows": "prompt, negative"})
        return 0
    if not a.model:
        ap.error("--model DIR is needed")
    cfg = load_pipeline_folder(a.model)
    f = 2 ** (len(cfg["vae"]["block_out_channels"]) - 1)
    if a.make_latents:
        if a.size % f:
            ap.error(f"--size must be a multiple of {f}")
        g = torch.Generator().manual_seed(a.seed)
        lat = torch.randn(1, cfg["unet"]["in_channels"], a.frames, a.size // f, a.size // f, generator=g)
        st_write(a.make_latents, {"latents": lat}, {"generator": f"dev/torch_pipeline.py seed {a.seed}"})
        return 0
    if a.flops:
        r = count_flops(cfg, a.frames, a.size, a.steps, a.guidance)
        print(f"RESULT flops frames={a.frames} size={a.size} steps={a.steps} text_gflop={r['text'] / 1e9:.3f} "
              f"unet_step_gflop={r['unet_step'] / 1e9:.3f} unet_gflop={r['unet'] / 1e9:.3f} "
              f"vae_gflop={r['vae'] / 1e9:.3f} total_gflop={r['total'] / 1e9:.3f} "
              f"params_unet={r['params']['unet']} params_vae={r['params']['vae']} "
              f"params_text={r['params']['text_encoder']}")
        return 0
    if not a.ids or not a.latents:
        ap.error("a run needs --ids and --latents")

    t0 = time.perf_counter()
    p = Pipeline(cfg["unet"], cfg["vae"], cfg["text_encoder"], cfg["scheduler"])
    p.load(*folder_weights(a.model))
    ids_pos, ids_neg = read_ids(a.ids)
    lat0 = st_read(a.latents)
    lat0 = lat0["latents"] if "latents" in lat0 else next(iter(lat0.values()))
    load_s = time.perf_counter() - t0
    nparam = sum(q.numel() for m in (p.unet, p.vae, p.text) for q in m.parameters())
    print(f"torch {torch.__version__}, {a.threads} threads: loaded {a.model} ({nparam / 1e6:.1f} M parameters) "
          f"in {load_s:.1f} s; latents {tuple(lat0.shape)}, {a.steps} steps, guidance {a.guidance}", flush=True)
    times = {}
    c0, r0 = cpu_s(), time.perf_counter()
    lat, video = p(ids_pos, ids_neg, lat0, a.steps, a.guidance, a.decode_chunk, times=times)
    run_s, run_cpu = time.perf_counter() - r0, cpu_s() - c0
    st = times["steps"]
    print("steps: " + " ".join(f"{x:.2f}" for x in st) + " s", flush=True)
    extra = ""
    if a.out_latents:
        st_write(a.out_latents, {"latents": lat.contiguous()}, {"generator": "dev/torch_pipeline.py"})
    if a.out_z:
        B, C, Fr, h, w = lat.shape
        z = (lat * (1 / p.scaling)).permute(0, 2, 1, 3, 4).reshape(B * Fr, C, h, w).contiguous()
        st_write(a.out_z, {"z": z}, {"generator": "dev/torch_pipeline.py: final latents / scaling_factor"})
    if a.compare_latents:
        ref = st_read(a.compare_latents)
        ref = ref["latents"] if "latents" in ref else next(iter(ref.values()))
        d, m = rel_err(lat, ref)
        extra += f" latents_max_abs_diff={d:.4g} latents_max_abs={m:.4g}"
    if a.compare_frames:
        mine = frames_uint8(video).astype(np.int32)
        other = read_png_frames(a.compare_frames, mine.shape[0]).astype(np.int32)
        if other.shape != mine.shape:
            raise SystemExit(f"--compare-frames: frames {other.shape} vs {mine.shape}")
        diff = np.abs(mine - other)
        extra += f" frames_max_abs_diff={diff.max()} frames_mean_abs_diff={diff.mean():.4g}"
    if a.compare_text or a.out_text:
        with torch.no_grad():
            emb = p.text(torch.cat([ids_pos, ids_neg]))
        if a.out_text:
            st_write(a.out_text, {"last_hidden_state": emb}, {"generator": "dev/torch_pipeline.py"})
        if a.compare_text:
            d, m = rel_err(emb, st_read(a.compare_text)["last_hidden_state"])
            extra += f" text_max_abs_diff={d:.4g} text_max_abs={m:.4g}"
    print(f"RESULT torch threads={a.threads} steps={a.steps} load_s={load_s:.3f} text_s={times['text']:.4f} "
          f"unet_s_per_step={sum(st) / len(st):.4f} unet_s={times['unet']:.3f} vae_s={times['vae']:.3f} "
          f"run_s={run_s:.3f} run_cpu_s={run_cpu:.3f} cpu_s={cpu_s():.3f} peak_rss_mib={peak_rss_mib():.1f}{extra}",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
