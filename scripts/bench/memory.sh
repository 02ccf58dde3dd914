#!/usr/bin/env bash
# usage: scripts/bench/memory.sh [OUT]     (default OUT: target/bench/memory)
#
# Peak memory and wall time of `infer` on large photos (README, "Photos of any size in bounded
# memory"): JPEGs made from a sample photo at SIZES (default 1 MP, 50 MP, 1 MP again), each
# stylized to PNG by the starter model on the CPU under `/usr/bin/time -v`. Prints a JSON line
# per photo: the maximum resident set in KiB and the wall time.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
OUT="${1:-target/bench/memory}"
SIZES="${SIZES:-1024x1024 8160x6120 1024x1024}"
mkdir -p "$OUT"
for size in $SIZES; do
    photo="$OUT/$size.jpg"
    [ -f "$photo" ] || .venv/bin/python - "$size" "$photo" <<'PYEOF'
import sys
from PIL import Image
w, h = map(int, sys.argv[1].split("x"))
Image.open("datasets/sample/astronaut.png").convert("RGB").resize((w, h), Image.BICUBIC).save(sys.argv[2], quality=92)
PYEOF
    /usr/bin/time -v target/release/infer "$photo" -c checkpoints/starter.safetensors --style udnie \
        -o "$OUT/$size-out.png" --device cpu > "$OUT/$size.log" 2> "$OUT/$size.time" \
        || { tail -n 30 "$OUT/$size.time" >&2; exit 1; }
    echo "{\"photo\": \"$size\", \"peak_kib\": $(grep 'Maximum resident' "$OUT/$size.time" | awk '{print $NF}'), \"wall\": \"$(grep 'Elapsed (wall' "$OUT/$size.time" | awk '{print $NF}')\"}"
done
