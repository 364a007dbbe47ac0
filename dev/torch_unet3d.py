#!/usr/bin/python3
"""PyTorch side of bench/bench_vs_torch.sh: time a ModelScope-structured UNet3D (diffusers 0.25
UNet3DConditionModel, as defined in dev/ref_unet3d_grad.py) on the CPU.

  /usr/bin/python3 dev/torch_unet3d.py --mode forward|train [--widths 64,128,256,256] [--frames 16]
      [--size 32] [--batch 1] [--threads N] [--repeat K] [--head-dim 64] [--text-dim 1024]
      [--layers 2] [--text-len 77] [--load DIR] [--out FILE] [--compare FILE]

  forward  torch.no_grad() forward per step (best of --repeat)
  train    forward + MSE loss against a target + loss.backward() per step (no optimizer update,
           gradients set to None before each step), as `kinema bench-train` measures.

--load DIR reads what `kinema bench-train --save DIR` wrote (DIR/unet/config.json, the weights
and DIR/inputs.safetensors), so the numbers can be cross-checked; without it the weights and
inputs are random (same distributions). --out FILE writes the forward's out.sample (safetensors,
F32); --compare FILE prints the max abs difference between the forward's output and FILE's
out.sample (e.g. `kinema forward -c unet` output). Peak RSS is the process's VmHWM, reset
(/proc/self/clear_refs) after the model is built and loaded, so it is the peak over the timed
steps; it includes the torch library, the weights and the gradients.

Prints one parseable line per measurement: "RESULT torch <mode> key=value ...".
Debian's torch 1.13: run with /usr/bin/python3."""
import argparse
import gc
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_unet3d_grad import UNet3D, load_into, st_read, st_write  # noqa: E402


def make_cfg(a):
    boc = [int(w) for w in a.widths.split(",")]
    n = len(boc)
    return {"in_channels": 4, "out_channels": 4, "block_out_channels": boc,
            "down_block_types": ["DownBlock3D" if i == n - 1 else "CrossAttnDownBlock3D" for i in range(n)],
            "up_block_types": ["UpBlock3D" if i == 0 else "CrossAttnUpBlock3D" for i in range(n)],
            "layers_per_block": a.layers, "downsample_padding": 1, "mid_block_scale_factor": 1.0,
            "norm_num_groups": 32, "norm_eps": 1e-5, "cross_attention_dim": a.text_dim,
            "attention_head_dim": a.head_dim}


def reset_peak_rss():
    """Linux: writing 5 to /proc/self/clear_refs resets VmHWM (the peak RSS) to the current RSS, so
    the peak seen later excludes the file loading (st_read holds the weights twice for a moment;
    kinema maps them). Returns False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=["forward", "train"], required=True)
    p.add_argument("--widths", default="64,128,256,256")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--text-dim", type=int, default=1024)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--text-len", type=int, default=77)
    p.add_argument("--load")
    p.add_argument("--out")
    p.add_argument("--compare")
    a = p.parse_args()
    if a.repeat < 1 or a.threads < 1:
        p.error("--repeat and --threads must be >= 1")
    torch.set_num_threads(a.threads)

    if a.load:
        cfg = json.load(open(os.path.join(a.load, "unet", "config.json")))
        a.widths = ",".join(str(w) for w in cfg["block_out_channels"])
    else:
        cfg = make_cfg(a)
    t0 = time.perf_counter()
    m = UNet3D(cfg)
    if a.load:
        w = st_read(os.path.join(a.load, "unet", "diffusion_pytorch_model.safetensors"))
        load_into(m, w)
        del w
        io = st_read(os.path.join(a.load, "inputs.safetensors"))
        sample, ts, text, target = io["sample"], io["timestep"], io["encoder_hidden_states"], io["target"]
        a.batch, _, a.frames, a.size, _ = sample.shape
    else:
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, q in m.named_parameters():
                if q.dim() >= 2:
                    q.copy_(torch.randn(q.shape, generator=g) / math.sqrt(q[0].numel()))
                else:
                    q.fill_(1.0 if name.endswith("weight") else 0.0)
        B, T, S = a.batch, a.frames, a.size
        sample = torch.randn(B, 4, T, S, S, generator=g)
        text = torch.randn(B, a.text_len, cfg["cross_attention_dim"], generator=g)
        target = torch.randn(B, 4, T, S, S, generator=g)
        ts = torch.full((B,), 500.0)
    nparam = sum(q.numel() for q in m.parameters())
    print(f"torch {torch.__version__} UNet3D widths {a.widths}, {nparam} parameters, built in "
          f"{time.perf_counter() - t0:.1f} s, {a.threads} threads", flush=True)

    gc.collect()
    rss_from = "steps" if reset_peak_rss() else "start"
    best, loss, gnorm = float("inf"), float("nan"), float("nan")
    out = None
    for rep in range(a.repeat):
        if a.mode == "forward":
            m.eval()
            s = time.perf_counter()
            with torch.no_grad():
                out = m(sample, ts, text)
            dt = time.perf_counter() - s
        else:
            m.train()
            for q in m.parameters():
                q.grad = None
            s = time.perf_counter()
            out = m(sample, ts, text)
            lt = F.mse_loss(out, target)
            lt.backward()
            dt = time.perf_counter() - s
            loss = lt.item()
            gnorm = math.sqrt(sum(float((q.grad.double() ** 2).sum()) for q in m.parameters()))
        best = min(best, dt)
        print(f"step {rep + 1}: {dt:.3f} s" + (f", loss {loss:.6f}" if a.mode == "train" else ""), flush=True)
    extra = ""
    if a.mode == "train":
        extra = f" loss={loss:.6f} grad_norm={gnorm:.6g}"
    if a.compare:
        ref = st_read(a.compare)["out.sample"]
        d = (out.detach() - ref).abs().max().item()
        extra += f" max_abs_diff={d:.3g} max_abs_ref={ref.abs().max().item():.3g}"
    if a.out:
        st_write(a.out, {"out.sample": out.detach()}, {"generator": "dev/torch_unet3d.py"})
    print(f"RESULT torch {a.mode} widths={a.widths} frames={a.frames} size={a.size} batch={a.batch} "
          f"threads={a.threads} s_per_step={best:.4f}{extra} peak_rss_mib={peak_rss_mib():.1f} rss_peak_since={rss_from}", flush=True)


if __name__ == "__main__":
    main()
