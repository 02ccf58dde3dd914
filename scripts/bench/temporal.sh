#!/usr/bin/env bash
# Temporal consistency benchmark. A plain base model is trained first (BASE iterations); from
# it, each model is fine-tuned for the same budget (ITERATIONS) from the same seed: plain,
# --stability-weight alone, --temporal-weight at each weight of TEMPORAL, and both terms
# together at each TEMPORAL:STABILITY pair of BOTH. Then the warping
# error (exact flow) and flicker ratio of each on clips with known motion made from the sample
# photos, one clip also measured with OpenCV's flow, and the style and content losses on the
# sample photos. The shared base keeps a small CPU budget on a stylized model, so that what
# the branches differ in is the term, not how far each got from random weights.
#
#   bash scripts/bench/temporal.sh                 # CPU, the README's recipe
#   DEVICE=cuda PRECISION=fp16 BASE=2000 ITERATIONS=1000 SIZE=256 CLIP_SIZE=256 FRAMES=60 BATCH=4 bash scripts/bench/temporal.sh
#
# Settings: BASE=200 ITERATIONS=80 BATCH=2 SIZE=128 CLIP_SIZE=128 FRAMES=30 STABILITY=10000 TEMPORAL="1000 3000 10000 30000"
# BOTH="" (pairs such as "3000:10000 3000:3000") SEED=42 PRECISION=bf16 DEVICE=cpu RESULTS=DIR
# (models already in RESULTS/NAME are reused).
# Quality figures only: no times, so it may run niced on a busy machine (NICE=15).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
BASE="${BASE:-200}"; ITERATIONS="${ITERATIONS:-80}"; BATCH="${BATCH:-2}"; SIZE="${SIZE:-128}"
SEED="${SEED:-42}"; STABILITY="${STABILITY:-10000}"; TEMPORAL="${TEMPORAL:-1000 3000 10000 30000}"; BOTH="${BOTH:-}"
PRECISION="${PRECISION:-bf16}"; DEVICE="${DEVICE:-cpu}"; NICE="${NICE:-15}"
STYLE="${STYLE:-datasets/styles/udnie.jpg}"; RESULTS="${RESULTS:-target/bench/temporal}"
TRAIN="${TRAIN:-target/release/train}"; INFER="${INFER:-target/release/infer}"
PY="${PYTHON:-.venv/bin/python}"; CLIP_SIZE="${CLIP_SIZE:-128}"; FRAMES="${FRAMES:-30}"
mkdir -p "$RESULTS/clips"
say() { echo "bench_temporal: $*" >&2; }

train() {  # NAME ITERATIONS [flags]
    local name=$1 iterations=$2; shift 2
    if [ -f "$RESULTS/$name/$name.safetensors" ] && [ ! -f "$RESULTS/$name/.partial" ]; then
        say "$name: reusing $RESULTS/$name/$name.safetensors"; return
    fi
    mkdir -p "$RESULTS/$name"; touch "$RESULTS/$name/.partial"
    say "$name: training ($iterations iterations)"
    local resume=()
    [ -f "$RESULTS/$name/$name.state.safetensors" ] && resume=(--resume)
    nice -n "$NICE" "$TRAIN" --recipe example --dataset datasets/sample --style "$STYLE" --style-size 256 \
        --image-size "$SIZE" --batch-size "$BATCH" --iterations "$iterations" --seed "$SEED" \
        --precision "$PRECISION" --device "$DEVICE" --log-every 10 --checkpoint-every 25 \
        --image-every 100000 --name "$name" --out "$RESULTS/$name" --logdir "$RESULTS/$name/logs" \
        "${resume[@]}" "$@" > "$RESULTS/$name/train.log" 2>&1
    rm -f "$RESULTS/$name/.partial"
}

train base "$BASE"
init=(--init "$RESULTS/base/base.safetensors")
MODELS=(plain stability)
train plain "$ITERATIONS" "${init[@]}"
train stability "$ITERATIONS" "${init[@]}" --stability-weight "$STABILITY"
for w in $TEMPORAL; do
    train "temporal-$w" "$ITERATIONS" "${init[@]}" --temporal-weight "$w"
    MODELS+=("temporal-$w")
done
for pair in $BOTH; do
    t="${pair%%:*}"; s="${pair##*:}"
    train "both-$t-$s" "$ITERATIONS" "${init[@]}" --temporal-weight "$t" --stability-weight "$s"
    MODELS+=("both-$t-$s")
done

# The clips: FRAMES frames of CLIP_SIZE px (the training size: on a CPU, 256 px clips cost 4x
# the stylizing), sensor noise σ 3, H.264.
declare -A PHOTO=([still]=coffee.png [pan]=coffee.png [zoom]=astronaut.png [rotate]=astronaut.png
                  [object]=astronaut.png [shake]=rocket.jpg)
for kind in pan object shake zoom rotate still; do
    clip="$RESULTS/clips/$kind.mp4"
    [ -f "$clip" ] || "$PY" scripts/flicker.py --make-clip "datasets/sample/${PHOTO[$kind]}" "$clip" \
        --motion-kind "$kind" --photo2 datasets/sample/chelsea.png --seed 1 --size "$CLIP_SIZE" --frames "$FRAMES"
    outs=()
    for m in "${MODELS[@]}"; do
        out="$RESULTS/clips/$kind-$m.mp4"
        [ -f "$out" ] || nice -n "$NICE" "$INFER" -c "$RESULTS/$m/$m.safetensors" --device "$DEVICE" \
            "$clip" -o "$out" --crf 12 >/dev/null
        outs+=("$out")
    done
    "$PY" scripts/flicker.py "$clip" "${outs[@]}" --json "$RESULTS/$kind.json"
done
# The shake clip again, its flow estimated by OpenCV as for footage of unknown motion.
shake=()
for m in "${MODELS[@]}"; do shake+=("$RESULTS/clips/shake-$m.mp4"); done
"$PY" scripts/flicker.py "$RESULTS/clips/shake.mp4" "${shake[@]}" --opencv --json "$RESULTS/shake-opencv.json"
for m in "${MODELS[@]}"; do
    nice -n "$NICE" "$PY" scripts/style_loss.py "$RESULTS/$m/$m.safetensors" --style "$STYLE" \
        --photos datasets/sample --size "$SIZE" --style-size 256 --json "$RESULTS/$m-losses.json" >/dev/null
done

"$PY" - "$RESULTS" "${MODELS[@]}" <<'PYEOF'
import json, sys
r, models = sys.argv[1], sys.argv[2:]
temporal = [m for m in models if m.startswith(("temporal", "both"))]
print("Warping error (flicker ratio in brackets); the ratios are warping errors.")
print("| clip | input | " + " | ".join(models) + " | "
      + " | ".join(f"{t} / plain | {t} / stability" for t in temporal) + " |")
print("|---|---|" + "---|" * (len(models) + 2 * len(temporal)))
for kind in ["still", "pan", "zoom", "rotate", "object", "shake", "shake-opencv"]:
    rec = json.load(open(f"{r}/{kind}.json"))
    e = {m: s["warping_error"] for m, s in zip(models, rec["stylized"])}
    f = {m: s["flicker"] for m, s in zip(models, rec["stylized"])}
    name = kind.replace("-opencv", " (OpenCV flow)")
    cells = " | ".join(f"{e[m]:.5f} ({f[m]:.2f})" for m in models)
    ratios = " | ".join(f"{e[t] / e['plain']:.2f}× | {e[t] / e['stability']:.2f}×" for t in temporal)
    print(f"| {name} | {rec['input_warping_error']:.5f} | {cells} | {ratios} |")
print()
print("| model | style loss | content loss |")
print("|---|---|---|")
base = json.load(open(f"{r}/plain-losses.json"))
for m in models:
    l = json.load(open(f"{r}/{m}-losses.json"))
    print(f"| {m} | {l['style_loss']:.4g} ({l['style_loss'] / base['style_loss'] - 1:+.1%}) "
          f"| {l['content_loss']:.4g} ({l['content_loss'] / base['content_loss'] - 1:+.1%}) |")
PYEOF
