#!/usr/bin/env bash
# Quality of several styles in one network, measured on the CPU with the real VGG16
# (README, "Several styles in one network"). Not a test: about an hour on 2 quiet cores.
#
#  1. One-style models of udnie and starry-night, K iterations each, and one two-style model
#     of both, 2K iterations, on the same training photos, sizes and seed.
#  2. starry-night added to the one-style udnie model (--add-style), in chunks of ADD_STEP
#     iterations up to K, each chunk a resume of the last.
#  3. Each model's held-out content and style losses (quality-bench evaluate), and the time
#     of a full training step against an add-style step (quality-bench step-time: the two
#     kinds alternate in one process, so a busy machine slows both alike).
#  4. A table of the figures (scripts/bench/table.py quality) and the picture docs/multistyle.jpg.
#
# Environment: K (default 150), ADD_STEP (25), OUT (target/quality), HELD_OUT (the photos of
# datasets/sample kept out of training: chelsea.png coffee.png). Trained models are reused
# when their run finished, so a second run only evaluates.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
K="${K:-150}"
ADD_STEP="${ADD_STEP:-25}"
OUT="${OUT:-target/quality}"
HELD_OUT="${HELD_OUT:-chelsea.png coffee.png}"
styles=datasets/styles
vgg=checkpoints/vgg16.safetensors

cargo build --release --bins
exe="$(cargo bench --bench quality --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "quality" and m.get("executable"):
        print(m["executable"])')"
[ -x "$exe" ] || { echo "quality_cpu: cannot build the quality benchmark" >&2; exit 1; }
cp -f "$exe" target/release/quality-bench
train=target/release/train
bench=target/release/quality-bench

# The photos: held-out ones apart, the others (links) to train on.
mkdir -p "$OUT/train" "$OUT/held"
for photo in datasets/sample/*; do
    name="$(basename "$photo")"
    case " $HELD_OUT " in
        *" $name "*) ln -sfn "$root/$photo" "$OUT/held/$name" ;;
        *) ln -sfn "$root/$photo" "$OUT/train/$name" ;;
    esac
done

common=(--recipe example --dataset "$OUT/train" --vgg "$vgg" --image-size 128 --style-size 256 --batch-size 2
        --seed 42 --log-every 25 --image-every 1000 --checkpoint-every 50 --device cpu)
# train RUN ARGS…: a run into $OUT/m/RUN, skipped when an earlier one finished.
train_run() {
    local run="$1"; shift
    if grep -qs "saved style model" "$OUT/log-$run.txt"; then
        echo "quality_cpu: $run already trained" >&2
        return
    fi
    rm -rf "$OUT/m/$run" "$OUT/runs/$run"
    echo "quality_cpu: training $run" >&2
    "$train" "${common[@]}" "$@" --out "$OUT/m/$run" --logdir "$OUT/runs/$run" > "$OUT/log-$run.txt" 2>&1
}
train_run udnie --style "$styles/udnie.jpg" --iterations "$K"
train_run starry --style "$styles/starry-night.jpg" --iterations "$K"
train_run two --style "$styles/udnie.jpg" --style "$styles/starry-night.jpg" --iterations $((2 * K))

# starry-night added to the udnie model, a chunk at a time; each chunk's model is kept.
add="$OUT/m/add"
for ((n = ADD_STEP; n <= K; n += ADD_STEP)); do
    log="$OUT/log-add-$n.txt"
    if grep -qs "saved style model" "$log" && [ -f "$OUT/add-$n.safetensors" ]; then
        continue
    fi
    if [ "$n" = "$ADD_STEP" ]; then
        rm -rf "$add"
        "$train" "${common[@]}" --init "$OUT/m/udnie/udnie.safetensors" \
            --add-style "$styles/starry-night.jpg" --iterations "$n" \
            --out "$add" --logdir "$OUT/runs/add" > "$log" 2>&1
    else
        "$train" --resume "$add" --iterations "$n" --log-every 25 > "$log" 2>&1
    fi
    cp -f "$add/udnie+starry-night.safetensors" "$OUT/add-$n.safetensors"
done

# Held-out losses of every model, as JSON lines.
evaluate() {
    "$bench" evaluate --vgg "$vgg" --photos "$OUT/held" --image-size 128 --style-size 256 "$@"
}
{
    evaluate --model "$OUT/m/udnie/udnie.safetensors" --style "udnie=$styles/udnie.jpg"
    evaluate --model "$OUT/m/starry/starry-night.safetensors" --style "starry-night=$styles/starry-night.jpg"
    evaluate --model "$OUT/m/two/udnie+starry-night.safetensors" \
        --style "udnie=$styles/udnie.jpg" --style "starry-night=$styles/starry-night.jpg"
    for ((n = ADD_STEP; n <= K; n += ADD_STEP)); do
        evaluate --model "$OUT/add-$n.safetensors" --style "starry-night=$styles/starry-night.jpg"
    done
} > "$OUT/evaluate.jsonl"

# Step times: full training against add-style training, alternating.
"$bench" step-time --photos "$OUT/train" \
    --style "$styles/starry-night.jpg" --style-size 256 --vgg "$vgg" --image-size 128 \
    --batch-size 2 --iterations 10 --warmup 2 > "$OUT/step-time.jsonl"

python3 scripts/bench/table.py quality "$OUT" --k "$K"

# The picture: a held-out photo and both styles of the two-style model.
first_held="$(set -- $HELD_OUT; echo "$1")"
target/release/infer -c "$OUT/m/two/udnie+starry-night.safetensors" --sheet \
    "$OUT/held/$first_held" -o "$OUT/multistyle.jpg" --max-size 256 --quality 85 --device cpu
echo "quality_cpu: sheet $OUT/multistyle.jpg (README's docs/multistyle.jpg)" >&2
