#!/usr/bin/env bash
# usage: scripts/bench/ttq_time.sh OUT
#
# The time axis of the time-to-quality benchmark (scripts/bench/ttq.sh): seconds per training
# iteration of each kind of step that its runs make, measured in one run, the kinds taking
# turns (ROUNDS rounds), each timed part under `flock /work/bench.lock`:
#   example/faithful-fp32   scripts/bench/torch_train.py --mode faithful (the example's loop)
#   example/tuned-fp32      torch_train.py --mode tuned (channels-last, workers, relu2_2 cut)
#   example/tuned-bf16      the same in bf16 autocast on the CPU
#   ours/SIZE-PRECISION-bB  speed-bench train-step (the library step that `train` runs)
# The example's side is then timed at its best (the fastest of its three), and each of our
# kinds becomes a ratio to it. Lines go to OUT/time.jsonl; OUT/busy.jsonl says how busy the
# CPUs were before each part.
# Settings: ROUNDS (3), STEPS (6 timed iterations), WARMUP (2), SIZE (128), OURS (the kinds
# of ours: size:precision:batch, default "128:bf16:4 64:bf16:4 128:fp32:4"), EXAMPLE_KINDS
# (mode:precision, default the three above), STYLE.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
OUT="${1:?usage: ttq_time.sh OUT}"
ROUNDS="${ROUNDS:-3}"
STEPS="${STEPS:-6}"
WARMUP="${WARMUP:-2}"
SIZE="${SIZE:-128}"
OURS="${OURS:-128:bf16:4 64:bf16:4 128:fp32:4}"
EXAMPLE_KINDS="${EXAMPLE_KINDS:-faithful:fp32 tuned:fp32 tuned:bf16}"
STYLE="${STYLE:-datasets/styles/udnie.jpg}"
PY="$root/.venv/bin/python"
VGG=checkpoints/vgg16.safetensors
PHOTOS="$OUT/photos/train"
LOCK="${LOCK:-/work/bench.lock}"
mkdir -p "$OUT/time"
[ -d "$PHOTOS" ] || bash scripts/bench/ttq_photos.sh "$OUT/photos"
[ -x target/release/speed-bench ] || { echo "ttq_time: run scripts/bench/build.sh first" >&2; exit 1; }

busy() {  # percentage of CPU time used by anything over 3 s
    local a b total=0 idle i
    read -r -a a < <(grep '^cpu ' /proc/stat); sleep 3; read -r -a b < <(grep '^cpu ' /proc/stat)
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    idle=$((b[4] - a[4] + b[5] - a[5]))
    echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}
record() {  # record LABEL ROUND JSONFILE: one line of time.jsonl from a result file
    "$PY" - "$1" "$2" "$3" "$(busy)" >> "$OUT/time.jsonl" <<'PYEOF'
import json, sys
label, rnd, path, busy = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
text = open(path).read()
try:
    r = json.loads(text)  # torch_train.py --json: one indented object
except ValueError:  # speed-bench: JSON lines
    r = [json.loads(l) for l in text.splitlines() if l.startswith("{")][-1]
if "ms_per_step" in r:  # speed-bench train-step
    s = r["ms_per_step"] / 1e3
    extra = {"image_size": r["image_size"], "batch_size": r["batch_size"], "precision": r["precision"]}
else:  # torch_train.py --json
    s = r["batch_size"] / r["images_per_sec"]
    extra = {"image_size": r["image_size"], "batch_size": r["batch_size"], "precision": r["precision"]}
print(json.dumps({"label": label, "round": rnd, "s_per_iter": s, "cpu_busy_after_percent": busy, **extra}))
PYEOF
}

echo "{\"uptime\": \"$(uptime)\", \"when\": \"start\"}" >> "$OUT/busy.jsonl"
for ((r = 1; r <= ROUNDS; r++)); do
    for kind in $EXAMPLE_KINDS; do
        mode="${kind%%:*}"; prec="${kind##*:}"
        f="$OUT/time/example-$mode-$prec-$r.json"
        flock "$LOCK" "$PY" scripts/bench/torch_train.py --dataset "$PHOTOS" --vgg "$VGG" \
            --style "$STYLE" --image-size "$SIZE" --batch-size 4 --iterations "$STEPS" \
            --warmup "$WARMUP" --mode "$mode" --precision "$prec" --workers "$(nproc)" \
            --threads "$(nproc)" --json "$f" > "$f.log" 2>&1
        record "example/$mode-$prec" "$r" "$f"
    done
    for kind in $OURS; do
        IFS=: read -r size prec batch <<< "$kind"
        f="$OUT/time/ours-$size-$prec-b$batch-$r.jsonl"
        flock "$LOCK" target/release/speed-bench train-step --dataset "$PHOTOS" --vgg "$VGG" \
            --style "$STYLE" --image-size "$size" --batch-size "$batch" --iterations "$STEPS" \
            --warmup "$WARMUP" --precision "$prec" --device cpu > "$f" 2> "$f.log"
        record "ours/$size-$prec-b$batch" "$r" "$f"
    done
done
echo "{\"uptime\": \"$(uptime)\", \"when\": \"end\"}" >> "$OUT/busy.jsonl"
echo "ttq_time: $OUT/time.jsonl" >&2
