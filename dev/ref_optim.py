#!/usr/bin/python3
"""Reference numbers for tests/test_optim.c: torch.optim.AdamW (two param groups: decay and
no-decay), torch.nn.utils.clip_grad_norm_, a linear-warm-up + cosine LR schedule set per step,
and an EMA of the weights with diffusers EMAModel's warm-up decay, for 10 steps on three small
tensors with given gradients. Writes tests/data/optim_adamw.safetensors.
Run with Debian's torch: /usr/bin/python3 dev/ref_optim.py"""
import json, math, os, struct
import torch

torch.manual_seed(20240)
cfg = dict(lr_max=1e-2, lr_min=1e-3, warmup=3, total=10, beta1=0.9, beta2=0.999, eps=1e-8,
           weight_decay=0.1, clip=1.0, ema_decay=0.9, steps=10)

w0 = torch.randn(4, 5)          # "a.weight": decayed
b0 = torch.randn(5) * 0.1       # "a.bias": 1-D, not decayed
c0 = torch.randn(3, 2, 2)       # "c.weight": decayed
names = ["a.weight", "a.bias", "c.weight"]
params = [torch.nn.Parameter(t.clone()) for t in (w0, b0, c0)]
opt = torch.optim.AdamW([{"params": [params[0], params[2]], "weight_decay": cfg["weight_decay"]},
                         {"params": [params[1]], "weight_decay": 0.0}],
                        lr=cfg["lr_max"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"])


def lr_at(s):  # s: 0-based index of the step about to be taken
    if s < cfg["warmup"]:
        return cfg["lr_max"] * (s + 1) / cfg["warmup"]
    prog = min(1.0, (s - cfg["warmup"]) / max(1, cfg["total"] - cfg["warmup"]))
    return cfg["lr_min"] + (cfg["lr_max"] - cfg["lr_min"]) * 0.5 * (1 + math.cos(math.pi * prog))


def ema_decay(k):  # diffusers EMAModel.get_decay with optimization_step = k + 1
    step = k
    if step <= 0:
        return 0.0
    return min(cfg["ema_decay"], (1 + step) / (10 + step))


out = {}
for i, n in enumerate(names):
    out["init." + n] = params[i].detach().clone()
ema = [p.detach().clone() for p in params]
for s in range(cfg["steps"]):
    scale = 0.04 if s % 2 == 0 else 1.0  # even steps: norm < clip (no clipping); odd: clipped
    for i, p in enumerate(params):
        p.grad = torch.randn_like(p) * scale
        out["grad.%d.%s" % (s, names[i])] = p.grad.detach().clone()
    norm = torch.nn.utils.clip_grad_norm_(params, cfg["clip"])
    lr = lr_at(s)
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step()
    d = ema_decay(s)
    for e, p in zip(ema, params):
        e.sub_((1 - d) * (e - p.detach()))
    out["norm.%d" % s] = norm.reshape(1).detach().clone()
    out["lr.%d" % s] = torch.tensor([lr], dtype=torch.float32)
    for i, p in enumerate(params):
        st = opt.state[p]
        out["param.%d.%s" % (s, names[i])] = p.detach().clone()
        out["m.%d.%s" % (s, names[i])] = st["exp_avg"].clone()
        out["v.%d.%s" % (s, names[i])] = st["exp_avg_sq"].clone()
        out["ema.%d.%s" % (s, names[i])] = ema[i].clone()


def write_safetensors(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        dt = "F64" if t.dtype == torch.float64 else "F32"
        data = t.numpy().tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "optim_adamw.safetensors")
write_safetensors(path, out, {"config": json.dumps(cfg)})
print("wrote", path, os.path.getsize(path), "bytes")
