#!/bin/bash
# bench_vs_torch.sh — kinema vs PyTorch (Debian's torch 1.13, /usr/bin/python3) on the same CPU,
# in one script: a ModelScope-structured UNet3D with the same random weights and inputs, forward
# (inference) and one training step (forward + MSE loss + backward into every parameter).
#
#   bench/bench_vs_torch.sh [BUILD_DIR]          (default build; needs BUILD_DIR/kinema)
#
# Environment (defaults in brackets): WIDTHS [64,128,256,256], FRAMES [16], SIZE [32] (latent
# H = W), BATCH [1], THREADS ["1 2"], REPEAT [2] (time = best of REPEAT steps, the first one
# included), TORCH [/usr/bin/python3], KEEP=1 keeps the work folder, FULL=1 adds a forward-only
# row for the full ModelScope widths 320,640,1280,1280 (random weights on each side, no
# cross-check; FULL_THREADS [2], FULL_REPEAT [1]). Text: 77 tokens of width 1024.
#
# Steps: (1) `kinema bench-train --save` writes the model (diffusers config + safetensors) and the
# batch, and times kinema's training step; (2) `kinema forward -c unet` times kinema's forward on
# that model and writes its output; (3) dev/torch_unet3d.py loads the same files and times torch's
# forward (torch.no_grad) and training step. Cross-checks, once per thread count: the max abs
# difference of the two forward outputs, and the loss and gradient norm of the training step.
# Prints a table: seconds per step, peak RSS, torch/kinema time ratio (> 1: kinema is faster).
set -euo pipefail

BUILD=${1:-build}
K=$BUILD/kinema
PY=${TORCH:-/usr/bin/python3}
WIDTHS=${WIDTHS:-64,128,256,256}
FRAMES=${FRAMES:-16}
SIZE=${SIZE:-32}
BATCH=${BATCH:-1}
THREADS=${THREADS:-"1 2"}
REPEAT=${REPEAT:-2}
HERE=$(cd "$(dirname "$0")/.." && pwd)

[ -x "$K" ] || { echo "bench_vs_torch: $K not found (build it: make BUILD=$BUILD)" >&2; exit 1; }
"$PY" -c 'import torch' 2>/dev/null || { echo "bench_vs_torch: $PY cannot import torch" >&2; exit 1; }

W=$(mktemp -d /tmp/kinema-vs-torch.XXXXXX)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$W"' EXIT
LOG=$W/log
: >"$LOG"

# value of key=... in the last RESULT line of a file
field() { { grep '^RESULT' "$1" || true; } | tail -1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }
run() { # name, command... : runs, keeps the output in $W/name, echoes the RESULT line
    local name=$1; shift
    echo "+ $*" >>"$LOG"
    if ! "$@" >"$W/$name" 2>&1; then
        cat "$W/$name" >&2
        echo "bench_vs_torch: '$*' failed" >&2
        exit 1
    fi
    grep '^RESULT\|ms/run' "$W/$name" | tail -1  || true
}

echo "kinema vs PyTorch: UNet3D widths $WIDTHS, $FRAMES frames of ${SIZE}x${SIZE} latents, batch $BATCH," \
     "77 text tokens, best of $REPEAT; $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs"
COMMON=(--widths "$WIDTHS" --frames "$FRAMES" --size "$SIZE" --batch "$BATCH")
first=1
for t in $THREADS; do
    save=()
    [ $first = 1 ] && save=(--save "$W/m")
    first=0
    run "k_train_$t" "$K" bench-train "${COMMON[@]}" --threads "$t" --repeat "$REPEAT" "${save[@]}"
    run "k_fwd_$t" "$K" forward -m "$W/m/unet" -c unet -i "$W/m/inputs.safetensors" -o "$W/kout_$t.safetensors" \
        --threads "$t" --repeat "$REPEAT"
    run "t_fwd_$t" "$PY" "$HERE/dev/torch_unet3d.py" --mode forward --load "$W/m" --threads "$t" \
        --repeat "$REPEAT" --compare "$W/kout_$t.safetensors"
    run "t_train_$t" "$PY" "$HERE/dev/torch_unet3d.py" --mode train --load "$W/m" --threads "$t" --repeat "$REPEAT"
done

# kinema forward prints "unet: X ms/run (best of K, ...), N threads, peak RSS M MiB"
kfwd_s() { sed -n 's/^unet: \([0-9.]*\) ms\/run.*/\1/p' "$1" | awk '{printf "%.3f", $1 / 1000}'; }
kfwd_rss() { sed -n 's/.*peak RSS \([0-9.]*\) MiB.*/\1/p' "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# GFLOP/s of kinema / torch: forward FLOPs counted by bench-train (x3 for a training step)
gfs() { awk -v f="$1" -v m="$2" -v a="$3" -v b="$4" 'BEGIN { printf "%.1f / %.1f", f * m / a, f * m / b }'; }
FL=$(field "$W/k_train_${THREADS%% *}" fwd_gflop)

echo
printf '| %-24s | %7s | %10s | %10s | %11s | %11s | %12s | %15s |\n' "measurement" threads "kinema s" \
       "torch s" "kinema MiB" "torch MiB" "torch/kinema" "GFLOP/s k / t"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' -------------------------- ---------: -----------: -----------: ------------: \
       ------------: -------------: -----------------:
for t in $THREADS; do
    ks=$(kfwd_s "$W/k_fwd_$t"); ts=$(field "$W/t_fwd_$t" s_per_step)
    printf '| %-24s | %7s | %10s | %10s | %11s | %11s | %12s | %15s |\n' "forward (inference)" "$t" "$ks" "$ts" \
           "$(kfwd_rss "$W/k_fwd_$t")" "$(field "$W/t_fwd_$t" peak_rss_mib)" "$(ratio "$ts" "$ks")" "$(gfs "$FL" 1 "$ks" "$ts")"
done
for t in $THREADS; do
    ks=$(field "$W/k_train_$t" s_per_step); ts=$(field "$W/t_train_$t" s_per_step)
    printf '| %-24s | %7s | %10s | %10s | %11s | %11s | %12s | %15s |\n' "training step (fwd+bwd)" "$t" "$ks" "$ts" \
           "$(field "$W/k_train_$t" peak_rss_mib)" "$(field "$W/t_train_$t" peak_rss_mib)" "$(ratio "$ts" "$ks")" \
           "$(gfs "$FL" 3 "$ks" "$ts")"
done
if [ "${FULL:-0}" = 1 ]; then
    ft=${FULL_THREADS:-2}; fr=${FULL_REPEAT:-1}; FW=320,640,1280,1280
    run k_full "$K" bench-unet --widths $FW --frames "$FRAMES" --size "$SIZE" --batch "$BATCH" --threads "$ft" \
        --repeat "$fr"
    run t_full "$PY" "$HERE/dev/torch_unet3d.py" --mode forward --widths $FW --frames "$FRAMES" --size "$SIZE" \
        --batch "$BATCH" --threads "$ft" --repeat "$fr"
    ks=$(sed -n 's/.*: \([0-9.]*\) s\/step.*/\1/p' "$W/k_full"); ts=$(field "$W/t_full" s_per_step)
    printf '| %-24s | %7s | %10s | %10s | %11s | %11s | %12s | %15s |\n' "forward, full width" "$ft" "$ks" "$ts" \
           "$(sed -n 's/.*peak RSS \([0-9.]*\) MiB.*/\1/p' "$W/k_full")" "$(field "$W/t_full" peak_rss_mib)" \
           "$(ratio "$ts" "$ks")" "-"
fi
echo
echo "cross-checks (same weights and inputs):"
fail=0
for t in $THREADS; do
    d=$(field "$W/t_fwd_$t" max_abs_diff); r=$(field "$W/t_fwd_$t" max_abs_ref)
    kl=$(field "$W/k_train_$t" loss); tl=$(field "$W/t_train_$t" loss)
    kg=$(field "$W/k_train_$t" grad_norm); tg=$(field "$W/t_train_$t" grad_norm)
    echo "  $t threads: forward max |kinema - torch| = $d (max |out| = $r); loss kinema $kl torch $tl;" \
         "grad norm kinema $kg torch $tg"
    # tolerances: forward 1e-4 of the output scale; loss and grad norm to 1e-4 relative
    awk -v d="$d" -v r="$r" -v a="$kl" -v b="$tl" -v g="$kg" -v h="$tg" 'BEGIN {
        ok = d <= 1e-4 * r && (a - b) ^ 2 <= (1e-4 * b) ^ 2 && (g - h) ^ 2 <= (1e-4 * h) ^ 2
        exit !ok }' || { echo "  MISMATCH at $t threads" >&2; fail=1; }
done
echo "forward: $FL GFLOP (convolutions, linear layers, attention; a training step counted as 3x)."
echo "kinema train arena peak: $(field "$W/k_train_${THREADS%% *}" arena_peak_mib) MiB; RSS includes the" \
     "weights (kinema: mapped file) and, for training, the gradients; torch's RSS is its peak over the timed" \
     "steps (after loading) and includes the torch library."
exit $fail
