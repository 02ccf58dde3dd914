#!/usr/bin/env bash
# The CPU benchmark suite: faststyle against PyTorch eager (the project's .venv torch) on this
# machine, in the same run, ending with one table of ratios (scripts/bench/table.py).
#
#   (a) one forward pass of the transformer at each of $SIZES, ours vs torch_infer.py
#   (b) the whole `infer` job on one photo as a process (load, decode, forward, encode):
#       wall time and peak RSS from /usr/bin/time -v, median of $JOB_REPS runs, ours vs
#       torch_infer.py --whole-job
#   (c) training steps, batch 4 at $TRAIN_SIZE² with the real VGG16: images/s, ours vs
#       torch_train.py --mode faithful and --mode tuned
#   (d) the data loader alone at 256², ours vs PyTorch's DataLoader (0 and $TORCH_WORKERS workers)
#
# usage: scripts/bench/cpu.sh            (about 8-10 minutes on a 2-core machine)
# Settings (environment):
#   SIZES=256,512,1024      forward sizes (S or WxH); add 2048 for the full set (+ ~6 min here)
#   PARTS=forward,job,train,loader     which parts to run
#   JOB_IMAGE=datasets/sample/astronaut.png   JOB_REPS=5
#   TRAIN_SIZE=128 TRAIN_ITERS=8 TRAIN_WARMUP=2
#   LOADER_BATCHES=150 DATA_COUNT=64   (COCO-like 640×480 JPEGs made from datasets/sample)
#   TORCH_WORKERS=$(nproc)   NO_BUILD=1 (skip scripts/bench/build.sh)   RESULTS=DIR
#   QUIET_WAIT=0   on a shared machine: before each part, wait up to this many seconds for
#                  the CPUs to be idle (under 15% busy over 3 s); how busy they were is logged
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

PY="${PYTHON:-$root/.venv/bin/python}"
SIZES="${SIZES:-256,512,1024}"
PARTS="${PARTS:-forward,job,train,loader}"
JOB_IMAGE="${JOB_IMAGE:-datasets/sample/astronaut.png}"
JOB_REPS="${JOB_REPS:-5}"
TRAIN_SIZE="${TRAIN_SIZE:-128}"
TRAIN_ITERS="${TRAIN_ITERS:-8}"
TRAIN_WARMUP="${TRAIN_WARMUP:-2}"
LOADER_BATCHES="${LOADER_BATCHES:-150}"
DATA_COUNT="${DATA_COUNT:-64}"
TORCH_WORKERS="${TORCH_WORKERS:-$(nproc)}"
VGG="${VGG:-checkpoints/vgg16.safetensors}"
STYLE="${STYLE:-datasets/styles/udnie.jpg}"
RESULTS="${RESULTS:-target/bench/cpu-$(date +%Y%m%d-%H%M%S)}"
BENCH="target/release/speed-bench"
INFER="target/release/infer"
TIME=/usr/bin/time

say() { echo "bench_cpu: $*" >&2; }
want() { [[ ",$PARTS," == *",$1,"* ]]; }

# Percentage of CPU time used (by anything) over the next 3 seconds, from /proc/stat.
cpu_busy() {
    local a b
    read -r -a a < <(grep '^cpu ' /proc/stat)
    sleep 3
    read -r -a b < <(grep '^cpu ' /proc/stat)
    local total=0 idle i
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    idle=$((b[4] - a[4] + b[5] - a[5]))
    echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}
# Waits (up to $QUIET_WAIT s) for other work on the machine to stop; logs what it saw.
quiet() {
    local waited=0 busy
    busy=$(cpu_busy)
    while [ "$busy" -ge 15 ] && [ "$waited" -lt "${QUIET_WAIT:-0}" ]; do
        sleep 7; waited=$((waited + 10)); busy=$(cpu_busy)
    done
    echo "{\"bench\": \"busy\", \"part\": \"$1\", \"cpu_busy_percent\": $busy, \"waited_s\": $waited}" \
        >>"$RESULTS/busy.jsonl"
    say "$1: CPUs ${busy}% busy before starting (waited ${waited} s)"
}

if [ "${NO_BUILD:-0}" != 1 ]; then
    bash scripts/bench/build.sh
fi
for f in "$BENCH" "$INFER"; do
    [ -x "$f" ] || { say "$f is missing: run scripts/bench/build.sh (or scripts/setup.sh)"; exit 1; }
done
[ -f "$VGG" ] || { say "$VGG is missing: bash scripts/setup.sh fetches it"; exit 1; }
if want job && [ ! -x "$TIME" ]; then
    say "$TIME is missing (GNU time, for wall time and peak RSS): apt-get install -y time"
    exit 1
fi
"$PY" -c 'import torch, PIL' || { say "$PY lacks torch or PIL: bash scripts/setup.sh"; exit 1; }

mkdir -p "$RESULTS"
work="target/bench"
mkdir -p "$work"
started=$(date +%s)

# The machine, for the table's header.
"$PY" - "$RESULTS/env.json" <<'EOF'
import json, os, platform, subprocess, sys, torch
cpu = platform.processor() or ""
try:
    with open("/proc/cpuinfo") as f:
        cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
except (OSError, StopIteration):
    pass
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
env = {"device": "cpu", "cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
       "torch threads": torch.get_num_threads(), "load average at start": round(os.getloadavg()[0], 2),
       "git": rev}
json.dump(env, open(sys.argv[1], "w"))
EOF

model="$work/random-style.safetensors"
"$BENCH" save-model --out "$model" --seed 0 >/dev/null
dataset="$work/coco-like-$DATA_COUNT"
"$BENCH" make-dataset --from datasets/sample --out "$dataset" --count "$DATA_COUNT" >"$RESULTS/dataset.jsonl"

# (a) forward passes: ours, then PyTorch, size by size (same weights, same thread count).
if want forward; then
    quiet forward
    IFS=, read -r -a sizes <<<"$SIZES"
    for s in "${sizes[@]}"; do
        w="${s%%x*}"; h="${s##*x}"
        px=$((w * h))
        if   [ $px -le $((256 * 256)) ];   then rep=7; warm=1
        elif [ $px -le $((512 * 512)) ];   then rep=5; warm=1
        elif [ $px -le $((1024 * 1024)) ]; then rep=3; warm=1
        else rep=2; warm=0; fi
        say "forward $s: faststyle ($rep timed, $warm warm-up)"
        "$BENCH" forward --sizes "$s" --device cpu --precisions fp32 --repeat $rep --warmup $warm \
            --checkpoint "$model" | tee -a "$RESULTS/forward_faststyle.jsonl" >&2
        if [ "$w" = "$h" ]; then
            say "forward $s: PyTorch eager"
            "$PY" scripts/bench/torch_infer.py --sizes "$w" --device cpu --precisions fp32 \
                --repeat $rep --warmup $warm --checkpoint "$model" --json "$RESULTS/forward_torch_$s.json" >&2
        else
            say "forward $s: torch_infer.py takes square sizes only; PyTorch skipped"
        fi
    done
fi

# (b) the whole job, as processes; one untimed run of each first (file cache), then
# alternating runs so that a load change on the machine hits both alike.
if want job; then
    quiet job
    out="$work/job-out"
    mkdir -p "$out"
    ours=("$INFER" --checkpoint "$model" "$JOB_IMAGE" --device cpu)
    theirs=("$PY" scripts/bench/torch_infer.py --checkpoint "$model" --device cpu --whole-job "$JOB_IMAGE")
    say "whole job on $JOB_IMAGE: $JOB_REPS runs each"
    rm -f "$out"/*.png
    "${ours[@]}" --output "$out/warm-ours.png"
    "${theirs[@]}" "$out/warm-torch.png"
    for i in $(seq 1 "$JOB_REPS"); do
        rm -f "$out/ours.png" "$out/torch.png"
        $TIME -v -o "$RESULTS/job_faststyle_$i.time" "${ours[@]}" --output "$out/ours.png"
        $TIME -v -o "$RESULTS/job_pytorch_$i.time" "${theirs[@]}" "$out/torch.png"
    done
    # Same weights, same photo: the two outputs should agree (truncation vs rounding aside).
    "$PY" - "$out/ours.png" "$out/torch.png" <<'EOF' >&2
import sys
import numpy as np
from PIL import Image
a, b = (np.asarray(Image.open(p).convert("RGB"), dtype=np.int16) for p in sys.argv[1:3])
# The example's network gives a slightly larger output for sides that are not multiples of 4.
h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
d = np.abs(a[:h, :w] - b[:h, :w])
print(f"whole job outputs: ours {a.shape[1]}x{a.shape[0]}, torch {b.shape[1]}x{b.shape[0]}; "
      f"max |ours - torch| = {d.max()}, mean = {d.mean():.3f} (8-bit levels)")
EOF
fi

# (c) training steps with the real VGG16.
if want train; then
    quiet train
    say "training step ${TRAIN_SIZE}², batch 4: faststyle ($TRAIN_ITERS timed, $TRAIN_WARMUP warm-up)"
    "$BENCH" train-step --dataset "$dataset" --vgg "$VGG" --style "$STYLE" --image-size "$TRAIN_SIZE" \
        --batch-size 4 --iterations "$TRAIN_ITERS" --warmup "$TRAIN_WARMUP" --device cpu --precision fp32 \
        | tee "$RESULTS/train_faststyle_fp32.jsonl" >&2
    for mode in faithful tuned; do
        say "training step ${TRAIN_SIZE}², batch 4: PyTorch $mode"
        "$PY" scripts/bench/torch_train.py --dataset "$dataset" --vgg "$VGG" --style "$STYLE" --mode $mode \
            --device cpu --batch-size 4 --image-size "$TRAIN_SIZE" --iterations "$TRAIN_ITERS" \
            --warmup "$TRAIN_WARMUP" --workers "$TORCH_WORKERS" --json "$RESULTS/train_torch_$mode.json" >&2
    done
fi

# (d) data loading alone at 256².
if want loader; then
    quiet loader
    say "data loading 256², batch 4: faststyle ($LOADER_BATCHES batches)"
    "$BENCH" loader --dataset "$dataset" --image-size 256 --batch-size 4 --batches "$LOADER_BATCHES" \
        | tee "$RESULTS/loader_faststyle.jsonl" >&2
    for mode in faithful tuned; do
        say "data loading 256², batch 4: PyTorch $mode"
        "$PY" scripts/bench/torch_train.py --loader-only --dataset "$dataset" --mode "$mode" \
            --workers "$TORCH_WORKERS" --iterations "$LOADER_BATCHES" --warmup 2 --image-size 256 \
            --batch-size 4 --device cpu | tee -a "$RESULTS/loader_torch.jsonl" >&2
    done
fi

"$PY" - "$RESULTS/env.json" "$started" <<'EOF'
import json, os, sys, time
env = json.load(open(sys.argv[1]))
env["load average at end"] = round(os.getloadavg()[0], 2)
env["suite minutes"] = round((time.time() - int(sys.argv[2])) / 60, 1)
json.dump(env, open(sys.argv[1], "w"))
EOF
"$PY" scripts/bench/table.py speed "$RESULTS" --title "faststyle vs PyTorch on the CPU" \
    --markdown "$RESULTS/table.md" --jsonl "$RESULTS/records.jsonl"
say "results in $RESULTS (table.md, records.jsonl, raw files)"
