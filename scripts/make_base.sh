#!/usr/bin/env bash
# usage: scripts/make_base.sh [OUT]   (OUT: checkpoints/base.safetensors)
#
# Makes the fast recipe's base network (checkpoints/README.md): `train` itself, content loss
# only (--style-weight 0, so the style image given is never used), on the four training photos
# of the time-to-quality benchmark (scripts/bench/ttq_photos.sh: none of the photos it holds
# out), 400 iterations of batch 4 at 128 px with --augment, then written in float16. About
# 2 minutes on 2 cores in bf16; a CPU without AVX-512 BF16 or AMX trains in fp32 instead.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
OUT="${1:-checkpoints/base.safetensors}"
work=target/base
precision=fp32
grep -qE 'avx512_bf16|amx_bf16' /proc/cpuinfo && precision=bf16
bash scripts/bench/ttq_photos.sh "$work/photos"
rm -rf "$work/run"
target/release/train --dataset "$work/photos/train" --style datasets/styles/udnie.jpg \
    --style-weight 0 --image-size 128 --iterations 400 --batch-size 4 --recipe fast --base none \
    --augment --precision "$precision" --seed 1 --name base --val none --out "$work/run" \
    --logdir "$work/run/logs" --device cpu
.venv/bin/python scripts/to_fp16.py "$work/run/base.safetensors" "$OUT"
