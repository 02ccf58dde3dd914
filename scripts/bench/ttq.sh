#!/usr/bin/env bash
# Time to quality: the held-out loss that a training recipe reaches against the wall time it
# takes, for the PyTorch example's loop and for `train --recipe fast` (README, "Time to
# quality"). A benchmark, not a test: hours on 2 CPU cores. Every part is kept and skipped
# when done, so the script can be stopped and run again.
#
#   photos   OUT/photos: 4 training photos, 4 held-out ones, the third style (ttq_photos.sh)
#   time     seconds per iteration of each kind of step, under flock (ttq_time.sh)
#   example  the example's loop (torch_train.py --curve, fp32) from OUT/init.safetensors,
#            checkpoints at SAVE_AT up to EXAMPLE_ITERS per style
#   fast     `train --recipe fast --precision bf16`, one run per time budget in FAST_BUDGETS
#            (and LONG_BUDGETS for LONG_STYLE), each budget in the example's iterations: a
#            run of budget E gets the iterations that take the time of E example iterations
#   levers   the fast recipe with one lever changed (LEVERS), at LEVER_BUDGET, on LEVER_STYLES
#   multi    one network of MULTI_STYLES (N of them) for N times MULTI_BUDGET, against the
#            one-style runs of MULTI_BUDGET; MULTI_FLAGS are added to its command, and with
#            MULTI_LABEL it goes to OUT/multi-LABEL (e.g. MULTI_FLAGS=--balance-styles
#            MULTI_LABEL=balanced)
#   augment  --augment against centre crops, at AUGMENT_BUDGETS, on AUGMENT_STYLE
#   evaluate each checkpoint's held-out loss: quality-bench evaluate, the example's perceptual
#            loss (content 1e5 on relu2_2, style 1e10 on the four Gram layers, the style image
#            at its own size) on OUT/photos/held at 256 px, the same code for both sides
#   report   OUT/ttq.md (tables) and OUT/ttq.png (held-out loss against wall time)
#
# Settings (environment): OUT (target/ttq), PARTS (photos,time,example,fast,levers,evaluate,
# report), SIZE (128), EXAMPLE_ITERS, SAVE_AT, FAST_BUDGETS, LONG_STYLE, LONG_BUDGETS,
# LEVER_BUDGET, LEVER_STYLES, FAST_FLAGS, REPORT_BUDGETS (the example budgets that the table
# compares, 200,800,3200), NICE (15). Long runs are niced and run one at a time.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
OUT="${OUT:-target/ttq}"
PARTS="${PARTS:-photos,time,example,fast,levers,multi,augment,evaluate,report}"
SIZE="${SIZE:-128}"
EXAMPLE_ITERS="${EXAMPLE_ITERS:-udnie=3200 starry-night=800 ihc=800}"
SAVE_AT="${SAVE_AT:-25,50,100,150,200,300,400,600,800,1200,1600,2400,3200}"
FAST_BUDGETS="${FAST_BUDGETS:-12 25 50 100}"
LONG_STYLE="${LONG_STYLE:-udnie}"
LONG_BUDGETS="${LONG_BUDGETS:-200 400 800}"
LEVER_BUDGET="${LEVER_BUDGET:-100}"
LEVER_STYLES="${LEVER_STYLES:-udnie ihc}"
NICE="${NICE:-15}"
# Flags added to every `train --recipe fast` run: none by default, so that it starts from the
# shipped base network (checkpoints/base.safetensors) as a user's run does; the lever
# "example's init" starts it from the example's initial weights instead.
FAST_FLAGS="${FAST_FLAGS:-}"
PY="$root/.venv/bin/python"
VGG=checkpoints/vgg16.safetensors
say() { echo "ttq: $*" >&2; }
want() { [[ ",$PARTS," == *",$1,"* ]]; }
style_image() {
    case "$1" in
        udnie) echo datasets/styles/udnie.jpg ;;
        starry-night) echo datasets/styles/starry-night.jpg ;;
        ihc) echo "$OUT/photos/styles/ihc.png" ;;
        *) say "unknown style $1"; exit 1 ;;
    esac
}
# The levers: LABEL|FLAGS (STYLE_HALF: the style image at half its shorter side).
LEVERS_DEFAULT="fast|
lr 1e-3|--lr 1e-3
lr 8e-3|--lr 8e-3
no warm-up|--warmup 0
no decay|--decay none
example's init|--init $OUT/init.safetensors
progressive 0.5|--progressive 0.5
style at half size|--style-size STYLE_HALF
batch 2 (lr/sqrt 2)|--batch-size 2 --lr LR_HALF_BATCH
betas 0.9,0.99|--betas 0.9,0.99"
LEVERS="${LEVERS:-$LEVERS_DEFAULT}"

if [ "${NO_BUILD:-0}" != 1 ]; then
    bash scripts/bench/build.sh
    exe="$(cargo bench --bench quality --no-run --message-format=json 2>/dev/null | "$PY" -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "quality" and m.get("executable"):
        print(m["executable"])')"
    cp -f "$exe" target/release/quality-bench
fi
train=target/release/train
mkdir -p "$OUT"

want photos && bash scripts/bench/ttq_photos.sh "$OUT/photos"
if [ ! -f "$OUT/init.safetensors" ]; then
    # The initial weights of both sides: the example's TransformerNet under torch.manual_seed(42).
    "$PY" - "$OUT/init.safetensors" <<'PYEOF'
import os, sys, torch
sys.path.insert(0, os.path.join(os.getcwd(), "scripts"))
from torch_net import TransformerNet, save
torch.manual_seed(42)
save(sys.argv[1], TransformerNet().state_dict(), {"created_by": "torch.manual_seed(42); TransformerNet()"})
PYEOF
fi
if want time && [ ! -s "$OUT/time.jsonl" ]; then
    OURS="128:bf16:4 64:bf16:4 128:bf16:2 64:bf16:2 128:fp32:4" bash scripts/bench/ttq_time.sh "$OUT"
fi

if want example; then
    for spec in $EXAMPLE_ITERS; do
        style="${spec%%=*}"; iters="${spec##*=}"; dir="$OUT/example/$style"
        if [ -f "$dir/step-$iters.safetensors" ]; then continue; fi
        say "example loop, $style, $iters iterations"
        mkdir -p "$dir"
        nice -n "$NICE" "$PY" scripts/bench/torch_train.py --curve "$dir" --dataset "$OUT/photos/train" \
            --vgg "$VGG" --style "$(style_image "$style")" --image-size "$SIZE" --batch-size 4 \
            --iterations "$iters" --save-at "$SAVE_AT" --init "$OUT/init.safetensors" \
            --threads "$(nproc)" >> "$dir/log.txt" 2>&1
    done
fi

# fast_run STYLE LABEL BUDGET FLAGS…: one `train --recipe fast` run of BUDGET example
# iterations' time, into OUT/fast/STYLE/LABEL-E<BUDGET>.
fast_run() {
    local style="$1" label="$2" budget="$3"; shift 3
    local image; image="$(style_image "$style")"
    local flags=("$@") i
    for i in "${!flags[@]}"; do
        case "${flags[$i]}" in
            STYLE_HALF) flags[$i]="$("$PY" -c "from PIL import Image; print(min(Image.open('$image').size) // 2)")" ;;
            LR_HALF_BATCH) flags[$i]="$("$PY" -c "import math; print(4e-3 / math.sqrt(2))")" ;;
        esac
    done
    local slug; slug="$(echo "$label" | tr -c 'a-zA-Z0-9.\n' '-')"
    local dir="$OUT/fast/$style/$slug-E$budget"
    if grep -qs "saved style model" "$dir/log.txt"; then return; fi
    local iters
    iters="$("$PY" scripts/bench/ttq_report.py iterations "$OUT" --budget "$budget" -- --image-size "$SIZE" "${flags[@]}")"
    say "fast, $style, $label, budget $budget example iterations: $iters iterations"
    rm -rf "$dir"; mkdir -p "$dir"
    echo "$label" > "$dir/label"
    nice -n "$NICE" "$train" --recipe fast --precision bf16 --device cpu --dataset "$OUT/photos/train" \
        --style "$image" --image-size "$SIZE" --iterations "$iters" --val none \
        --log-every 25 --image-every 1000000 --checkpoint-every 1000000 \
        --out "$dir" --logdir "$dir/logs" $FAST_FLAGS "${flags[@]}" > "$dir/log.txt" 2>&1
}

if want fast; then
    for spec in $EXAMPLE_ITERS; do
        style="${spec%%=*}"
        budgets="$FAST_BUDGETS"
        [ "$style" = "$LONG_STYLE" ] && budgets="$budgets $LONG_BUDGETS"
        for b in $budgets; do fast_run "$style" fast "$b"; done
    done
fi
if want levers; then
    for style in $LEVER_STYLES; do
        while IFS='|' read -r label flags; do
            [ -n "$label" ] || continue
            # shellcheck disable=SC2086
            fast_run "$style" "$label" "$LEVER_BUDGET" $flags
        done <<< "$LEVERS"
    done
fi

# Several styles: one network of MULTI_STYLES trained for N times MULTI_BUDGET (N styles),
# against the one-style fast runs of MULTI_BUDGET.
MULTI_STYLES="${MULTI_STYLES:-udnie starry-night}"
MULTI_BUDGET="${MULTI_BUDGET:-100}"
MULTI_FLAGS="${MULTI_FLAGS:-}"
MULTI_LABEL="${MULTI_LABEL:-}"
if want multi; then
    n=0; images=()
    for st in $MULTI_STYLES; do images+=(--style "$(style_image "$st")"); n=$((n + 1)); done
    budget=$((n * MULTI_BUDGET))
    dir="$OUT/multi${MULTI_LABEL:+-$MULTI_LABEL}/$(echo $MULTI_STYLES | tr ' ' '+')-E$budget"
    for st in $MULTI_STYLES; do fast_run "$st" fast "$MULTI_BUDGET"; done
    if ! grep -qs "saved style model" "$dir/log.txt"; then
        iters="$("$PY" scripts/bench/ttq_report.py iterations "$OUT" --budget "$budget" -- --image-size "$SIZE")"
        say "fast, $n styles, budget $budget: $iters iterations"
        rm -rf "$dir"; mkdir -p "$dir"
        nice -n "$NICE" "$train" --recipe fast --precision bf16 --device cpu --dataset "$OUT/photos/train" \
            "${images[@]}" --image-size "$SIZE" --iterations "$iters" --val none --log-every 25 \
            --image-every 1000000 --checkpoint-every 1000000 --name multi --out "$dir" \
            --logdir "$dir/logs" $MULTI_FLAGS > "$dir/log.txt" 2>&1
    fi
fi
# --augment against centre crops, at AUGMENT_BUDGETS on AUGMENT_STYLE.
AUGMENT_STYLE="${AUGMENT_STYLE:-udnie}"
AUGMENT_BUDGETS="${AUGMENT_BUDGETS:-100 800}"
if want augment; then
    for b in $AUGMENT_BUDGETS; do
        fast_run "$AUGMENT_STYLE" fast "$b"
        fast_run "$AUGMENT_STYLE" augment "$b" --augment
    done
fi

if want evaluate; then
    for model in "$OUT"/multi*/*/multi.safetensors; do
        [ -f "$model" ] || continue
        grep -qF "\"model\": \"$model\"" "$OUT/eval.jsonl" && continue
        specs=()
        for st in $(basename "$(dirname "$model")" | sed 's/-E[0-9]*$//' | tr '+' ' '); do
            specs+=(--style "$st=$(style_image "$st")")
        done
        nice -n "$NICE" target/release/quality-bench evaluate --model "$model" --photos "$OUT/photos/held" \
            "${specs[@]}" --vgg "$VGG" --image-size 256 \
            | "$PY" -c "import json, sys; [print(json.dumps({**json.loads(l), 'model': sys.argv[1]})) for l in sys.stdin]" \
                "$model" >> "$OUT/eval.jsonl"
    done
    # Every checkpoint not yet scored (eval.jsonl keeps one line per model file and style).
    touch "$OUT/eval.jsonl"
    for model in "$OUT"/example/*/step-*.safetensors "$OUT"/fast/*/*/*.safetensors; do
        [ -f "$model" ] || continue
        case "$model" in *.state.safetensors) continue ;; esac
        grep -qF "\"model\": \"$model\"" "$OUT/eval.jsonl" && continue
        style="$(basename "$(dirname "$model")")"
        [ "${model#"$OUT"/fast/}" != "$model" ] && style="$(basename "$(dirname "$(dirname "$model")")")"
        nice -n "$NICE" target/release/quality-bench evaluate --model "$model" --photos "$OUT/photos/held" \
            --style "0=$(style_image "$style")" --vgg "$VGG" --image-size 256 \
            | "$PY" -c "import json, sys; [print(json.dumps({**json.loads(l), 'model': sys.argv[1], 'style': sys.argv[2]})) for l in sys.stdin]" \
                "$model" "$style" >> "$OUT/eval.jsonl"
    done
fi
want report && "$PY" scripts/bench/ttq_report.py report "$OUT" --budgets "${REPORT_BUDGETS:-200,800,3200}" \
    --lever-budget "$LEVER_BUDGET"
exit 0
