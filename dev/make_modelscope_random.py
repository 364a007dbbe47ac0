#!/usr/bin/python3
"""Writes a diffusers-format text-to-video folder with random weights and the structure of
ModelScope text-to-video-ms-1.7b (TextToVideoSDPipeline: UNet3DConditionModel, SD
AutoencoderKL, OpenCLIP-H-style CLIPTextModel, CLIP BPE tokenizer padded with "!", DDIM), for
bench/bench_e2e_vs_torch.sh. kinema (`kinema generate --model OUT`) and dev/torch_pipeline.py
both read it.

  /usr/bin/python3 dev/make_modelscope_random.py OUT [--scale full|small] [--seed N]
      [--configs-only] [--tokenizer DIR]

  --scale full   ms-1.7b sizes: UNet 320,640,1280,1280 (1.41 G parameters), text encoder width
                 1024, 23 layers, 16 heads, MLP 4096 (340 M), VAE 128,256,512,512 (84 M);
                 about 7.3 GB of float32 safetensors.
  --scale small  the same structure at the sizes of shared/fixtures/diffusers (UNet 16,32,32,32,
                 groups 8, head width 8, text width 32; VAE 16,32,32,32, groups 8; text 3 layers,
                 4 heads, MLP 128): about 7 MB, most of it the 49408-row token embedding.
  --configs-only writes model_index.json and the configs without weights (enough for
                 `torch_pipeline.py --flops`).
  --tokenizer    vocab.json + merges.txt (default shared/fixtures/clip).

Weights (float32, one torch generator seeded with --seed, tensors in state-dict order): every
matrix, convolution and embedding N(0,1)/sqrt(fan_in) (fan_in = the product of the dimensions
after the first), every norm weight 1, every bias 0. The layers diffusers zero-initialises
(the last temporal conv, the temporal proj_out) get the same random values, so every path
changes the output. Tensors are generated and written one at a time (memory: the largest one).
Config keys are those diffusers 0.25 / transformers 4.33 write (as in the fixture configs)."""
import argparse
import json
import math
import os
import shutil
import struct
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_unet3d_grad import UNet3D  # noqa: E402
from torch_pipeline import AutoencoderKL, CLIPTextModel, on_meta  # noqa: E402

SIZES = {
    "full": {"unet": ([320, 640, 1280, 1280], 32, 64, 32), "vae": ([128, 256, 512, 512], 32, 256),
             "text": (1024, 23, 16, 4096, 512)},
    "small": {"unet": ([16, 32, 32, 32], 8, 8, 8), "vae": ([16, 32, 32, 32], 8, 64),
              "text": (32, 3, 4, 128, 32)},
}


def unet_config(boc, groups, head, sample, text_dim):
    n = len(boc)
    return {"_class_name": "UNet3DConditionModel", "_diffusers_version": "0.25.1", "act_fn": "silu",
            "attention_head_dim": head, "block_out_channels": boc, "cross_attention_dim": text_dim,
            "down_block_types": ["CrossAttnDownBlock3D"] * (n - 1) + ["DownBlock3D"], "downsample_padding": 1,
            "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05,
            "norm_num_groups": groups, "num_attention_heads": None, "out_channels": 4, "sample_size": sample,
            "up_block_types": ["UpBlock3D"] + ["CrossAttnUpBlock3D"] * (n - 1)}


def vae_config(boc, groups, sample):
    n = len(boc)
    return {"_class_name": "AutoencoderKL", "_diffusers_version": "0.25.1", "act_fn": "silu",
            "block_out_channels": boc, "down_block_types": ["DownEncoderBlock2D"] * n, "force_upcast": True,
            "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": groups,
            "out_channels": 3, "sample_size": sample, "scaling_factor": 0.18215,
            "up_block_types": ["UpDecoderBlock2D"] * n}


def text_config(hidden, layers, heads, mlp, proj):
    """CLIPTextConfig.to_dict() of transformers 4.33 (the keys of the fixture's config.json)."""
    return {
        "return_dict": True, "output_hidden_states": False, "output_attentions": False, "torchscript": False,
        "torch_dtype": "float32", "use_bfloat16": False, "tf_legacy_loss": False, "pruned_heads": {},
        "tie_word_embeddings": True, "is_encoder_decoder": False, "is_decoder": False,
        "cross_attention_hidden_size": None, "add_cross_attention": False, "tie_encoder_decoder": False,
        "max_length": 20, "min_length": 0, "do_sample": False, "early_stopping": False, "num_beams": 1,
        "num_beam_groups": 1, "diversity_penalty": 0.0, "temperature": 1.0, "top_k": 50, "top_p": 1.0,
        "typical_p": 1.0, "repetition_penalty": 1.0, "length_penalty": 1.0, "no_repeat_ngram_size": 0,
        "encoder_no_repeat_ngram_size": 0, "bad_words_ids": None, "num_return_sequences": 1,
        "chunk_size_feed_forward": 0, "output_scores": False, "return_dict_in_generate": False,
        "forced_bos_token_id": None, "forced_eos_token_id": None, "remove_invalid_values": False,
        "exponential_decay_length_penalty": None, "suppress_tokens": None, "begin_suppress_tokens": None,
        "architectures": ["CLIPTextModel"], "finetuning_task": None, "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
        "label2id": {"LABEL_0": 0, "LABEL_1": 1}, "tokenizer_class": None, "prefix": None,
        "bos_token_id": 49406, "pad_token_id": 1, "eos_token_id": 49407, "sep_token_id": None,
        "decoder_start_token_id": None, "task_specific_params": None, "problem_type": None,
        "_name_or_path": "", "transformers_version": "4.33.0.dev0", "vocab_size": 49408, "hidden_size": hidden,
        "intermediate_size": mlp, "projection_dim": proj, "num_hidden_layers": layers,
        "num_attention_heads": heads, "max_position_embeddings": 77, "layer_norm_eps": 1e-05,
        "hidden_act": "gelu", "initializer_range": 0.02, "initializer_factor": 1.0, "attention_dropout": 0.0,
        "dropout": 0.0, "model_type": "clip_text_model"}


SCHEDULER = {"_class_name": "DDIMScheduler", "_diffusers_version": "0.25.1", "beta_end": 0.012,
             "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
             "clip_sample_range": 1.0, "dynamic_thresholding_ratio": 0.995, "num_train_timesteps": 1000,
             "prediction_type": "epsilon", "rescale_betas_zero_snr": False, "sample_max_value": 1.0,
             "set_alpha_to_one": False, "steps_offset": 1, "thresholding": False, "timestep_spacing": "leading",
             "trained_betas": None}

MODEL_INDEX = {"_class_name": "TextToVideoSDPipeline", "_diffusers_version": "0.25.1",
               "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
               "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet3DConditionModel"],
               "vae": ["diffusers", "AutoencoderKL"]}

TOKENIZER_CONFIG = {"add_prefix_space": False, "bos_token": "<|startoftext|>", "clean_up_tokenization_spaces": True,
                    "do_lower_case": True, "eos_token": "<|endoftext|>", "errors": "replace",
                    "model_max_length": 77, "pad_token": "!", "tokenizer_class": "CLIPTokenizer",
                    "unk_token": "<|endoftext|>"}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def write_random(path, module, g, meta):
    """Streams module's parameters (built on the meta device: names and shapes) into a safetensors
    file, drawing each tensor when it is written. Returns the parameter count."""
    shapes = [(k, tuple(v.shape)) for k, v in module.state_dict().items()]
    header, off = {"__metadata__": meta}, 0
    for k, s in shapes:
        n = 4 * math.prod(s)
        header[k] = {"dtype": "F32", "shape": list(s), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for k, s in shapes:
            if len(s) >= 2:
                t = torch.randn(s, generator=g) / math.sqrt(math.prod(s[1:]))
            elif k.endswith("weight"):
                t = torch.ones(s)
            else:
                t = torch.zeros(s)
            f.write(t.numpy().tobytes())
    return sum(math.prod(s) for _, s in shapes)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--scale", choices=["full", "small"], default="full")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--configs-only", action="store_true")
    ap.add_argument("--tokenizer", default=os.path.join(here, "..", "..", "shared", "fixtures", "clip"))
    a = ap.parse_args()

    S = SIZES[a.scale]
    text = text_config(*S["text"])
    cfg = {"unet": unet_config(*S["unet"], text_dim=text["hidden_size"]), "vae": vae_config(*S["vae"]),
           "text_encoder": text}
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        os.makedirs(os.path.join(a.out, sub), exist_ok=True)
    write_json(os.path.join(a.out, "model_index.json"), MODEL_INDEX)
    for k in ("unet", "vae", "text_encoder"):
        write_json(os.path.join(a.out, k, "config.json"), cfg[k])
    write_json(os.path.join(a.out, "scheduler", "scheduler_config.json"), SCHEDULER)
    write_json(os.path.join(a.out, "tokenizer", "tokenizer_config.json"), TOKENIZER_CONFIG)
    for fn in ("vocab.json", "merges.txt"):
        src = os.path.join(a.tokenizer, fn)
        if not os.path.exists(src):
            raise SystemExit(f"{src}: not found (--tokenizer DIR with vocab.json and merges.txt)")
        shutil.copyfile(src, os.path.join(a.out, "tokenizer", fn))
    for fn in ("LICENSE",):
        if os.path.exists(os.path.join(a.tokenizer, fn)):
            shutil.copyfile(os.path.join(a.tokenizer, fn), os.path.join(a.out, "tokenizer", fn))
    if a.configs_only:
        print(f"wrote the configs of {a.out} ({a.scale}, no weights)")
        return 0

    g = torch.Generator().manual_seed(a.seed)
    meta = {"generator": f"dev/make_modelscope_random.py --scale {a.scale} --seed {a.seed}",
            "init": "matrices/convs/embeddings N(0,1)/sqrt(fan_in), norm weights 1, biases 0"}
    t0 = time.perf_counter()
    with on_meta():
        mods = {"unet": UNet3D(cfg["unet"]), "vae": AutoencoderKL(cfg["vae"]),
                "text_encoder": CLIPTextModel(cfg["text_encoder"])}
    files = {"unet": "diffusion_pytorch_model.safetensors", "vae": "diffusion_pytorch_model.safetensors",
             "text_encoder": "model.safetensors"}
    total = 0
    for k in ("text_encoder", "vae", "unet"):
        path = os.path.join(a.out, k, files[k])
        n = write_random(path, mods[k], g, dict(meta, model=k))
        total += n
        print(f"  {k}: {n / 1e6:.1f} M parameters -> {path} ({os.path.getsize(path) / 2**20:.1f} MiB)", flush=True)
    print(f"wrote {a.out} ({a.scale}, seed {a.seed}): {total / 1e6:.1f} M parameters in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
