#!/bin/bash
# bench_e2e_vs_torch.sh — end to end: `kinema generate` vs the same TextToVideoSDPipeline in PyTorch
# (dev/torch_pipeline.py, Debian's torch 1.13) on one ModelScope-structured folder with random
# weights, the same prompt ids and the same initial latents.
#
#   bench/bench_e2e_vs_torch.sh [BUILD_DIR [MODEL_DIR]]     (default build; needs BUILD_DIR/kinema)
#
# Environment (defaults in brackets):
#   SCALE [full]     full: ms-1.7b sizes (UNet 320,640,1280,1280, 1.41 G parameters; text encoder
#                    width 1024 x 23 layers; SD VAE), 256x256, 16 frames. small: the same structure
#                    at the diffusers fixtures' sizes, 128x128, 8 frames (seconds), and an estimate
#                    of the full run's times from the FLOP ratio.
#   MODEL            a folder to reuse (as the 2nd argument); else the random folder is written by
#                    dev/make_modelscope_random.py --scale SCALE --seed 0 into
#                    ${MODEL_CACHE:-/tmp/kinema-ms-random-SCALE} and kept for later runs (full:
#                    7.3 GB; delete it by hand).
#   STEPS [25], THREADS ["1 2"], SIZE [256|128], FRAMES [16|8], GUIDANCE [9], SEED [0] (the initial
#   latents: torch.randn with this seed, written once and given to both sides),
#   DECODE_CHUNK [FRAMES] (frames per VAE batch, both sides; diffusers 0.25 decodes all frames at
#   once), PROMPT, NEGATIVE, TORCH [/usr/bin/python3], KEEP=1 keeps the work folder.
#
# Per thread count: (1) `kinema generate --latents L --save-latents --decode-chunk -o DIR/f%d.png`
# under /usr/bin/time; UNet s/step is its last "s/step" figure (the denoising loop's mean), VAE
# decode = its generation time minus the loop; (2) `kinema forward -c text-encoder` on the two
# prompts' ids (generate does not time the text encoder); (3) dev/torch_pipeline.py with the same
# ids, latents, steps and chunking, under /usr/bin/time; it times text/steps/decode itself and
# compares its final latents, text embeddings and uint8 frames with kinema's; (4) when
# DECODE_CHUNK >= FRAMES, `kinema forward -c vae-decode` on torch's final latents / scaling (all
# frames in one batch) gives kinema's VAE decode time (else: generate's time after the loop).
# Peak RSS is the process's max RSS (/usr/bin/time %M = VmHWM): weights (kinema: mapped from the
# safetensors; torch: read into the parameters), activations, libraries. CPU s = user + sys of the
# whole process (load included): the figure to trust while other jobs share the cores.
set -euo pipefail

BUILD=${1:-build}
K=$BUILD/kinema
PY=${TORCH:-/usr/bin/python3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
SCALE=${SCALE:-full}
case $SCALE in
    full) SIZE=${SIZE:-256}; FRAMES=${FRAMES:-16} ;;
    small) SIZE=${SIZE:-128}; FRAMES=${FRAMES:-8} ;;
    *) echo "bench_e2e_vs_torch: SCALE must be full or small, got '$SCALE'" >&2; exit 2 ;;
esac
STEPS=${STEPS:-25}
THREADS=${THREADS:-"1 2"}
GUIDANCE=${GUIDANCE:-9}
SEED=${SEED:-0}
DECODE_CHUNK=${DECODE_CHUNK:-$FRAMES}
PROMPT=${PROMPT:-"a panda playing a guitar on a boat, photorealistic"}
NEGATIVE=${NEGATIVE:-"blurry, low quality, watermark"}
MODEL=${2:-${MODEL:-}}
TIMEFMT='TIME wall=%e user=%U sys=%S maxrss_kib=%M'

[ -x "$K" ] || { echo "bench_e2e_vs_torch: $K not found (build it: make BUILD=$BUILD)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench_e2e_vs_torch: /usr/bin/time (GNU time) is needed" >&2; exit 1; }
"$PY" -c 'import torch, PIL' 2>/dev/null || { echo "bench_e2e_vs_torch: $PY cannot import torch and PIL" >&2; exit 1; }

W=$(mktemp -d /tmp/kinema-e2e.XXXXXX)
[ "${KEEP:-0}" = 1 ] && echo "work folder: $W" || trap 'rm -rf "$W"' EXIT
LOG=$W/log
: >"$LOG"

run() { # name, command...: runs it, output in $W/name; on failure prints it and stops
    local name=$1; shift
    echo "+ $*" >>"$LOG"
    if ! "$@" >"$W/$name" 2>&1; then
        cat "$W/$name" >&2
        echo "bench_e2e_vs_torch: '$*' failed" >&2
        exit 1
    fi
}
# key=value fields of the last line starting with a tag
field() { { grep "^$3" "$1" || true; } | tail -1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

[ "$DECODE_CHUNK" -ge 1 ] || { echo "bench_e2e_vs_torch: DECODE_CHUNK must be >= 1" >&2; exit 2; }

# ---------------------------------------------------------------- the model folder
if [ -z "$MODEL" ]; then
    MODEL=${MODEL_CACHE:-/tmp/kinema-ms-random-$SCALE}
    if [ ! -f "$MODEL/.kinema-e2e-complete" ]; then
        echo "writing the random $SCALE folder $MODEL ..."
        rm -rf "$MODEL"
        run make "$PY" "$HERE/dev/make_modelscope_random.py" "$MODEL" --scale "$SCALE" --seed 0
        cat "$W/make"
        touch "$MODEL/.kinema-e2e-complete"
    fi
fi
[ -f "$MODEL/model_index.json" ] || { echo "bench_e2e_vs_torch: $MODEL/model_index.json not found" >&2; exit 1; }

# ---------------------------------------------------------------- the same inputs for both sides
PAD=$("$PY" -c 'import json, sys
p = json.load(open(sys.argv[1])).get("pad_token", "<|endoftext|>")
print(p["content"] if isinstance(p, dict) else p)' "$MODEL/tokenizer/tokenizer_config.json")
"$K" tokenize --tokenizer "$MODEL/tokenizer" --pad 77 --pad-token "$PAD" "$PROMPT" >"$W/ids_p.txt"
"$K" tokenize --tokenizer "$MODEL/tokenizer" --pad 77 --pad-token "$PAD" "$NEGATIVE" >"$W/ids_n.txt"
run ids "$PY" "$HERE/dev/torch_pipeline.py" --ids-from "$W/ids_p.txt,$W/ids_n.txt" --ids-out "$W/ids.safetensors"
run latents "$PY" "$HERE/dev/torch_pipeline.py" --model "$MODEL" --make-latents "$W/latents.safetensors" \
    --frames "$FRAMES" --size "$SIZE" --seed "$SEED"
run flops "$PY" "$HERE/dev/torch_pipeline.py" --flops --model "$MODEL" --frames "$FRAMES" --size "$SIZE" \
    --steps "$STEPS" --guidance "$GUIDANCE"

echo "kinema vs PyTorch end to end: $MODEL ($SCALE), ${SIZE}x${SIZE}, $FRAMES frames, $STEPS DDIM steps," \
     "guidance $GUIDANCE, VAE batches of $DECODE_CHUNK frames; $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs"
echo "FLOPs: $(grep '^RESULT flops' "$W/flops" | cut -d' ' -f3-)"

for t in $THREADS; do
    mkdir -p "$W/k_$t"
    run "k_gen_$t" /usr/bin/time -f "$TIMEFMT" "$K" generate -m "$MODEL" -p "$PROMPT" -n "$NEGATIVE" \
        --steps "$STEPS" -g "$GUIDANCE" --seed "$SEED" --latents "$W/latents.safetensors" \
        --save-latents "$W/k_lat_$t.safetensors" --decode-chunk "$DECODE_CHUNK" -o "$W/k_$t/f%d.png" --threads "$t"
    tr '\r' '\n' <"$W/k_gen_$t" >"$W/k_gen_$t.txt"
    run "k_text_$t" "$K" forward -m "$MODEL" -c text-encoder -i "$W/ids.safetensors" -o "$W/k_text_$t.safetensors" \
        --threads "$t" --repeat 3
    run "t_run_$t" /usr/bin/time -f "$TIMEFMT" "$PY" "$HERE/dev/torch_pipeline.py" --model "$MODEL" \
        --ids "$W/ids.safetensors" --latents "$W/latents.safetensors" --steps "$STEPS" --guidance "$GUIDANCE" \
        --threads "$t" --decode-chunk "$DECODE_CHUNK" --compare-latents "$W/k_lat_$t.safetensors" \
        --compare-frames "$W/k_$t/f%d.png" --compare-text "$W/k_text_$t.safetensors" --out-z "$W/z_$t.safetensors"
    if [ "$DECODE_CHUNK" -ge "$FRAMES" ]; then
        run "k_vae_$t" "$K" forward -m "$MODEL" -c vae-decode -i "$W/z_$t.safetensors" -o "$W/k_vae_$t.safetensors" \
            --threads "$t" --repeat 1
    fi
    echo "  $t thread(s) done: kinema $(field "$W/k_gen_$t" wall TIME) s, torch $(field "$W/t_run_$t" wall TIME) s wall"
done

# ---------------------------------------------------------------- the table
UF=$(field "$W/flops" unet_step_gflop RESULT)
declare -A KV TV
for t in $THREADS; do
    g=$W/k_gen_$t.txt
    ks=$(sed -n 's/^step [0-9]*\/[0-9]* .* \([0-9.]*\) s\/step.*/\1/p' "$g" | tail -1)
    kgen=$(sed -n 's/^wrote .* in \([0-9.]*\) s.*peak RSS.*/\1/p' "$g" | tail -1)
    ktext=$(sed -n 's/^text-encoder: \([0-9.]*\) ms\/run.*/\1/p' "$W/k_text_$t" | awk '{printf "%.4f", $1 / 1000}')
    KV[$t,step]=$ks
    KV[$t,text]=$ktext
    if [ -f "$W/k_vae_$t" ]; then # kinema forward -c vae-decode: all frames in one batch, as generate here
        KV[$t,vae]=$(sed -n 's/^vae-decode: \([0-9.]*\) ms\/run.*/\1/p' "$W/k_vae_$t" | awk '{printf "%.3f", $1 / 1000}')
    else # generate's time after the loop (printed to 0.1 s; the loop's s/step to 0.01 s)
        KV[$t,vae]=$(calc "%.3f" "$kgen - $STEPS * $ks")
    fi
    KV[$t,run]=$(calc "%.3f" "$kgen + $ktext")
    KV[$t,wall]=$(field "$g" wall TIME)
    KV[$t,cpu]=$(calc "%.2f" "$(field "$g" user TIME) + $(field "$g" sys TIME)")
    KV[$t,rss]=$(calc "%.0f" "$(field "$g" maxrss_kib TIME) / 1024")
    r=$W/t_run_$t
    TV[$t,step]=$(field "$r" unet_s_per_step RESULT)
    TV[$t,text]=$(field "$r" text_s RESULT)
    TV[$t,vae]=$(field "$r" vae_s RESULT)
    TV[$t,run]=$(field "$r" run_s RESULT)
    TV[$t,wall]=$(field "$r" wall TIME)
    TV[$t,cpu]=$(calc "%.2f" "$(field "$r" user TIME) + $(field "$r" sys TIME)")
    TV[$t,rss]=$(calc "%.0f" "$(field "$r" maxrss_kib TIME) / 1024")
done
echo
printf '| %-38s | %7s | %10s | %10s | %12s |\n' measurement threads kinema torch torch/kinema
printf '|%s|%s|%s|%s|%s|\n' ---------------------------------------- ---------: -----------: -----------: -------------:
row() { # label key
    for t in $THREADS; do
        printf '| %-38s | %7s | %10s | %10s | %12s |\n' "$1" "$t" "${KV[$t,$2]}" "${TV[$t,$2]}" \
               "$(calc "%.2f" "${TV[$t,$2]} / ${KV[$t,$2]}")"
    done
}
row "UNet s/step (CFG batch 2)" step
row "text encode s (prompt + negative)" text
row "VAE decode s ($FRAMES frames)" vae
row "generation s (text + steps + decode)" run
row "process wall s (load, I/O included)" wall
row "process cpu s (user + sys)" cpu
row "peak RSS MiB (VmHWM)" rss
for t in $THREADS; do
    printf '| %-38s | %7s | %10s | %10s | %12s |\n' "UNet GFLOP/s" "$t" "$(calc "%.1f" "$UF / ${KV[$t,step]}")" \
           "$(calc "%.1f" "$UF / ${TV[$t,step]}")" "-"
done

echo
echo "cross-checks (same weights, ids and initial latents):"
fail=0
for t in $THREADS; do
    r=$W/t_run_$t
    ld=$(field "$r" latents_max_abs_diff RESULT); lm=$(field "$r" latents_max_abs RESULT)
    fd=$(field "$r" frames_max_abs_diff RESULT); fm=$(field "$r" frames_mean_abs_diff RESULT)
    td=$(field "$r" text_max_abs_diff RESULT); tm=$(field "$r" text_max_abs RESULT)
    echo "  $t thread(s): final latents max |kinema - torch| = $ld (max |latents| $lm); frames (uint8) max |diff|" \
         "$fd, mean $fm; text embeddings max |diff| $td (max $tm)"
    # the fixtures' pipeline tolerance (1e-3 of the scale), the text encoder's (1e-4), frames within 1
    # level (truncation); many steps at guidance 9 can amplify float32 rounding, so a frame miss is
    # reported with the latents' error next to it
    awk -v ld="$ld" -v lm="$lm" -v fd="$fd" -v td="$td" -v tm="$tm" 'BEGIN {
        s = tm > 1 ? tm : 1
        exit !(ld <= 1e-3 * lm && fd <= 1 && td <= 1e-4 * s) }' || { echo "  MISMATCH at $t thread(s)" >&2; fail=1; }
done

if [ "$SCALE" = small ]; then
    # the full run's time, scaled by the FLOP ratio (per component); small widths run at a far lower
    # GFLOP/s than full ones, so this over-estimates the full run (an upper bound)
    run fullcfg "$PY" "$HERE/dev/make_modelscope_random.py" "$W/fullcfg_model" --scale full --configs-only
    run fullflops "$PY" "$HERE/dev/torch_pipeline.py" --flops --model "$W/fullcfg_model" --frames 16 --size 256 \
        --steps "$STEPS" --guidance "$GUIDANCE"
    ff() { field "$W/fullflops" "$1" RESULT; }
    sf() { field "$W/flops" "$1" RESULT; }
    ru=$(calc "%.6g" "$(ff unet_step_gflop) / $(sf unet_step_gflop)")
    rt=$(calc "%.6g" "$(ff text_gflop) / $(sf text_gflop)")
    rv=$(calc "%.6g" "$(ff vae_gflop) / $(sf vae_gflop)")
    echo
    echo "full run (SCALE=full: 256x256, 16 frames, $STEPS steps) estimated from this run x the FLOP ratio" \
         "(UNet x$ru, text x$rt, VAE x$rv; full: $(ff total_gflop) GFLOP):"
    tot=0
    for t in $THREADS; do
        for side in kinema torch; do
            if [ $side = kinema ]; then s=${KV[$t,step]}; x=${KV[$t,text]}; v=${KV[$t,vae]}
            else s=${TV[$t,step]}; x=${TV[$t,text]}; v=${TV[$t,vae]}; fi
            e=$(calc "%.0f" "$STEPS * $s * $ru + $x * $rt + $v * $rv")
            tot=$(calc "%.0f" "$tot + $e")
            echo "  $side, $t thread(s): UNet $(calc "%.1f" "$s * $ru") s/step, total about $e s ($(calc "%.0f" "$e / 60") min)"
        done
    done
    echo "  all rows: about $(calc "%.0f" "$tot / 60") min, plus writing the 7.3 GB folder once"
    # the tiny widths of SCALE=small reach a fraction of the full widths' GFLOP/s (docs/perf.md: the
    # full-width UNet forward ran at about 148 (kinema) and 134 (torch) GFLOP/s on 2 threads), so
    # also print the time at a full-width rate
    G=${FULL_GFLOPS:-100}
    echo "  at $G GFLOP/s (FULL_GFLOPS; a full-width rate): $(calc "%.0f" "$(ff unet_step_gflop) / $G") s/step," \
         "$(calc "%.0f" "$(ff total_gflop) / $G / 60") min per side and thread count"
fi
exit $fail
