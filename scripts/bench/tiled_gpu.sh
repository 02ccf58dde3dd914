#!/usr/bin/env bash
# Tiled inference on CUDA: a 100-megapixel photo through `infer` in half precision, with the
# GPU memory it took (nvidia-smi sampled every 100 ms), against the untiled pass on a photo
# small enough for it, and the tiled/untiled difference.
#
# Runs on a machine with an NVIDIA GPU and PyTorch 2.11.0 but no Rust: build here with
# `bash scripts/bench/build.sh`, bring target/release/infer and this repository's scripts/ and
# datasets/sample; LD_LIBRARY_PATH is set to that machine's torch lib folder.
#
# usage: DEVICE=cuda PRECISION=fp16 bash scripts/bench/tiled_gpu.sh
#        DEVICE=cpu PRECISION=fp32 SIZES=2000x1500 SMALL=600x400 bash scripts/bench/tiled_gpu.sh   (a check)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
PY="${PYTHON:-$root/.venv/bin/python}"
DEVICE="${DEVICE:-cuda}"
PRECISION="${PRECISION:-fp16}"
SIZES="${SIZES:-12000x8400}"          # 100.8 megapixels
SMALL="${SMALL:-2048x1536}"           # also run untiled, for the difference
INFER="${INFER:-target/release/infer}"
work="${WORK:-target/bench/tiled-gpu}"
mkdir -p "$work"
torch_lib="$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

model="$work/random-style.safetensors"
"$PY" - "$model" <<'PYEOF'
import os, sys
sys.path.insert(0, "scripts")
import torch
from torch_net import TransformerNet, save
torch.manual_seed(0)
sd = TransformerNet().state_dict()
sd["deconv3.conv2d.weight"] *= 40  # outputs spread over 0…255, so that differences show
sd["deconv3.conv2d.bias"] += 128
save(sys.argv[1], sd, {"format": "faststyle.transformer", "style": "random"})
PYEOF

photo() {  # photo WxH -> path (a sample photo resized)
    local p="$work/photo-$1.jpg"
    [ -f "$p" ] || "$PY" - datasets/sample/hubble_deep_field.jpg "$p" "${1%%x*}" "${1##*x}" <<'PYEOF'
import sys
from PIL import Image
Image.MAX_IMAGE_PIXELS = None
Image.open(sys.argv[1]).convert("RGB").resize((int(sys.argv[3]), int(sys.argv[4])), Image.BILINEAR).save(sys.argv[2], quality=92)
PYEOF
    echo "$p"
}

gpu_peak() {  # runs "$@" while sampling GPU memory; prints the peak MiB used
    local log="$work/smi.log"
    : >"$log"
    if [ "$DEVICE" != cpu ] && command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$log" &
        local smi=$!
        "$@"
        kill "$smi"; wait "$smi" 2>/dev/null || true
        sort -n "$log" | tail -1
    else
        "$@"
        echo "n/a"
    fi
}

for s in ${SIZES//,/ }; do
    p="$(photo "$s")"
    start=$(date +%s.%N)
    peak=$(gpu_peak /usr/bin/time -f "%M" -o "$work/rss" "$INFER" -c "$model" "$p" -o "$work/out-$s.png" \
        --device "$DEVICE" --precision "$PRECISION" --tile auto)
    secs=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $start }")
    echo "tiled $s $DEVICE $PRECISION: ${secs} s, GPU peak ${peak} MiB, host peak RSS $(( $(cat "$work/rss") / 1024 )) MiB"
done

p="$(photo "$SMALL")"
for mode in off 512; do
    "$INFER" -c "$model" "$p" -o "$work/small-$mode.png" --device "$DEVICE" --precision "$PRECISION" --tile "$mode"
done
"$PY" - "$work/small-off.png" "$work/small-512.png" <<'PYEOF'
import sys
import numpy as np
from PIL import Image
a, b = (np.asarray(Image.open(p), dtype=np.int16) for p in sys.argv[1:3])
d = np.abs(a - b)
print(f"tiled (512) vs untiled on {a.shape[1]}x{a.shape[0]}: max {d.max()}/255, "
      f"mean {d.mean():.4f}, {100 * (d > 0).mean():.2f}% of values differ")
PYEOF
