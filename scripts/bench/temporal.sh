#!/usr/bin/env bash
# Temporal consistency benchmark: three models from the same seed and budget (plain,
# --stability-weight alone, --temporal-weight), then the warping error (exact flow) and flicker
# ratio of each on clips with known motion made from the sample photos, one clip also measured
# with OpenCV's flow, and the style and content losses on the sample photos.
#
#   bash scripts/bench/temporal.sh                 # CPU, the README's recipe
#   DEVICE=cuda PRECISION=fp16 bash scripts/bench/temporal.sh
#
# Settings: ITERATIONS=150 BATCH=2 SIZE=128 STABILITY=10000 TEMPORAL=(recommended) SEED=42
# PRECISION=bf16 DEVICE=cpu RESULTS=DIR (models already in RESULTS/NAME are reused). Quality
# figures only: no times, so it may run niced on a busy machine (NICE=15).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
ITERATIONS="${ITERATIONS:-150}"; BATCH="${BATCH:-2}"; SIZE="${SIZE:-128}"; SEED="${SEED:-42}"
STABILITY="${STABILITY:-10000}"; TEMPORAL="${TEMPORAL:-}"; PRECISION="${PRECISION:-bf16}"
DEVICE="${DEVICE:-cpu}"; NICE="${NICE:-15}"; STYLE="${STYLE:-datasets/styles/udnie.jpg}"
RESULTS="${RESULTS:-target/bench/temporal}"
TRAIN="${TRAIN:-target/release/train}"; INFER="${INFER:-target/release/infer}"
PY="${PYTHON:-.venv/bin/python}"
mkdir -p "$RESULTS/clips"
say() { echo "bench_temporal: $*" >&2; }

train() {  # NAME [flags]
    local name=$1; shift
    if [ -f "$RESULTS/$name/$name.safetensors" ] && [ ! -f "$RESULTS/$name/.partial" ]; then
        say "$name: reusing $RESULTS/$name/$name.safetensors"; return
    fi
    mkdir -p "$RESULTS/$name"; touch "$RESULTS/$name/.partial"
    say "$name: training ($ITERATIONS iterations)"
    local resume=()
    [ -f "$RESULTS/$name/$name.state.safetensors" ] && resume=(--resume)
    nice -n "$NICE" "$TRAIN" --dataset datasets/sample --style "$STYLE" --style-size 256 \
        --image-size "$SIZE" --batch-size "$BATCH" --iterations "$ITERATIONS" --seed "$SEED" \
        --precision "$PRECISION" --device "$DEVICE" --log-every 10 --checkpoint-every 25 \
        --image-every 100000 --name "$name" --out "$RESULTS/$name" --logdir "$RESULTS/$name/logs" \
        "${resume[@]}" "$@" > "$RESULTS/$name/train.log" 2>&1
    rm -f "$RESULTS/$name/.partial"
}

temporal_flag=(--temporal-weight)
[ -n "$TEMPORAL" ] && temporal_flag+=("$TEMPORAL")
train plain
train temporal "${temporal_flag[@]}"
train stability --stability-weight "$STABILITY"
MODELS=(plain stability temporal)

# The clips: 60 frames, 256 px, sensor noise σ 3, H.264.
declare -A PHOTO=([still]=coffee.png [pan]=coffee.png [zoom]=astronaut.png [rotate]=astronaut.png
                  [object]=astronaut.png [shake]=rocket.jpg)
for kind in pan object shake zoom rotate still; do
    clip="$RESULTS/clips/$kind.mp4"
    [ -f "$clip" ] || "$PY" scripts/flicker.py --make-clip "datasets/sample/${PHOTO[$kind]}" "$clip" \
        --motion-kind "$kind" --photo2 datasets/sample/chelsea.png --seed 1
    for m in "${MODELS[@]}"; do
        out="$RESULTS/clips/$kind-$m.mp4"
        [ -f "$out" ] || nice -n "$NICE" "$INFER" -c "$RESULTS/$m/$m.safetensors" --device "$DEVICE" \
            "$clip" -o "$out" --crf 12 >/dev/null
    done
    outs=(); for m in "${MODELS[@]}"; do outs+=("$RESULTS/clips/$kind-$m.mp4"); done
    "$PY" scripts/flicker.py "$clip" "${outs[@]}" --json "$RESULTS/$kind.json"
done
# The shake clip again, its flow estimated by OpenCV as for footage of unknown motion.
"$PY" scripts/flicker.py "$RESULTS/clips/shake.mp4" "${outs[@]}" --opencv --json "$RESULTS/shake-opencv.json"
for m in "${MODELS[@]}"; do
    nice -n "$NICE" "$PY" scripts/style_loss.py "$RESULTS/$m/$m.safetensors" --style "$STYLE" \
        --photos datasets/sample --size "$SIZE" --json "$RESULTS/$m-losses.json" >/dev/null
done

"$PY" - "$RESULTS" <<'EOF'
import json, sys
r = sys.argv[1]
models = ["plain", "stability", "temporal"]
print("| clip | input | " + " | ".join(models) + " | temporal / plain | temporal / stability |")
print("|---|---|" + "---|" * (len(models) + 2))
for kind in ["still", "pan", "zoom", "rotate", "object", "shake", "shake-opencv"]:
    rec = json.load(open(f"{r}/{kind}.json"))
    e = [s["warping_error"] for s in rec["stylized"]]
    f = [s["flicker"] for s in rec["stylized"]]
    name = kind.replace("-opencv", " (OpenCV flow)")
    cells = " | ".join(f"{x:.5f} (flicker {y:.2f})" for x, y in zip(e, f))
    print(f"| {name} | {rec['input_warping_error']:.5f} | {cells} | {e[2] / e[0]:.2f}× | {e[2] / e[1]:.2f}× |")
print()
print("| model | style loss | content loss |")
print("|---|---|---|")
base = json.load(open(f"{r}/plain-losses.json"))
for m in models:
    l = json.load(open(f"{r}/{m}-losses.json"))
    print(f"| {m} | {l['style_loss']:.4g} ({l['style_loss'] / base['style_loss'] - 1:+.1%}) | {l['content_loss']:.4g} ({l['content_loss'] / base['content_loss'] - 1:+.1%}) |")
EOF
