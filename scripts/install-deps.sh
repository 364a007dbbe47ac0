#!/usr/bin/env bash
# Installs kinema's build and test dependencies from Debian's packages (run as root).
# Skips apt-get entirely when everything is already there.
set -eu
pkgs=(
  build-essential pkg-config make clang libclang-rt-14-dev
  libopenblas-dev            # GEMM
  libcjson-dev               # config.json, model_index.json
  libpng-dev libjpeg62-turbo-dev libgif-dev libwebp-dev zlib1g-dev   # images, GIF, WebP, .gz
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev ffmpeg # MP4/WebM, ffprobe in tests
  libopenmpi-dev openmpi-bin # data-parallel training
)
# --dev adds what the dev/ PyTorch reference scripts need (the tests do not need it)
[ "${1:-}" = --dev ] && pkgs+=(python3-torch python3-numpy)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing ${missing[*]}; run this script as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-deps: all dependencies present"
