#!/usr/bin/env bash
# CUDA correctness checks (not a benchmark), for a machine with an NVIDIA GPU and PyTorch 2.11.0
# but no Rust, like scripts/bench/gpu.sh: bring target/release/{train,infer},
# checkpoints/vgg16.safetensors and datasets/sample, and run `bash scripts/bench/gpu_check.sh`.
#
#   (1) train --device cuda on the sample photos, real VGG16, in fp32, bf16 and fp16 from the
#       same seed: the mean losses of the last steps of each against fp32 (target: within 1%)
#   (2) resume on CUDA: half the run, then --resume to the end, against the uninterrupted run
#   (3) infer --device cuda with the fp32 model in fp32, fp16 and bf16 against infer --device
#       cpu (target: every pixel within 2/255 of fp32)
# Everything lands in $RESULTS (default target/gpu-check); summary.json holds the figures.
#
# Settings: ITERS=200 SIZE=256 BATCH=4 PHOTOS=datasets/sample STYLE=datasets/styles/udnie.jpg
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
ITERS="${ITERS:-200}"
SIZE="${SIZE:-256}"
BATCH="${BATCH:-4}"
PHOTOS="${PHOTOS:-datasets/sample}"
STYLE="${STYLE:-datasets/styles/udnie.jpg}"
RESULTS="${RESULTS:-target/gpu-check}"
DEVICE="${DEVICE:-cuda}"
say() { echo "gpu_check: $*" >&2; }

if [ -z "${PYTHON:-}" ]; then
    for p in /opt/torch/.venv/bin/python "$root/.venv/bin/python" python3; do
        if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' 2>/dev/null; then PYTHON="$p"; break; fi
    done
fi
PY="${PYTHON:?no Python with torch found; set PYTHON}"
torch_lib="$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
rm -rf "$RESULTS"
mkdir -p "$RESULTS"

common=(--recipe example --dataset "$PHOTOS" --style "$STYLE" --image-size "$SIZE" --batch-size "$BATCH" --seed 7
        --log-every 1 --image-every 100000 --device "$DEVICE" --logdir "$RESULTS/runs")
precs=(fp32 bf16 fp16)
[ "$DEVICE" = cpu ] && precs=(fp32)

# (1) training in each precision.
for p in "${precs[@]}"; do
    say "train $p, $ITERS iterations"
    t0=$(date +%s.%N)
    target/release/train "${common[@]}" --out "$RESULTS/ck" --name "train-$p" --iterations "$ITERS" --precision "$p" \
        >"$RESULTS/train-$p.log" 2>&1 || say "train $p failed (exit $?)"
    t1=$(date +%s.%N)
    echo "{\"run\": \"train-$p\", \"wall_s\": $(awk "BEGIN{print $t1 - $t0}")}" >>"$RESULTS/walls.jsonl"
done

# (2) resume: the first half, then the rest.
half=$((ITERS / 2))
say "resume: $half iterations, then --resume to $ITERS"
target/release/train "${common[@]}" --out "$RESULTS/ck-resume" --name resume --iterations "$half" --precision fp32 \
    >"$RESULTS/resume-1.log" 2>&1 || say "resume part 1 failed (exit $?)"
target/release/train --resume "$RESULTS/ck-resume" --iterations "$ITERS" --device "$DEVICE" --log-every 1 \
    >"$RESULTS/resume-2.log" 2>&1 || say "resume part 2 failed (exit $?)"

# (3) infer in each precision with the fp32 model, against the CPU; on PNG copies of the
# photos, so that no JPEG encoding hides or adds differences.
model="$RESULTS/ck/train-fp32.safetensors"
mkdir -p "$RESULTS/infer" "$RESULTS/photos"
"$PY" -c 'import sys, glob, os; from PIL import Image
for f in sorted(glob.glob(sys.argv[1] + "/*")):
    Image.open(f).convert("RGB").save(os.path.join(sys.argv[2], os.path.splitext(os.path.basename(f))[0] + ".png"))' \
    "$PHOTOS" "$RESULTS/photos"
for p in "${precs[@]}"; do
    say "infer $DEVICE $p"
    target/release/infer -c "$model" "$RESULTS/photos" -o "$RESULTS/infer/$DEVICE-$p" --device "$DEVICE" \
        --precision "$p" >"$RESULTS/infer-$p.log" 2>&1 || say "infer $p failed (exit $?)"
done
say "infer cpu fp32"
target/release/infer -c "$model" "$RESULTS/photos" -o "$RESULTS/infer/cpu-fp32" --device cpu \
    >"$RESULTS/infer-cpu.log" 2>&1 || say "infer cpu failed (exit $?)"

"$PY" - "$RESULTS" "$ITERS" "$DEVICE" "${precs[*]}" <<'EOF'
import glob, json, os, re, sys
import numpy as np
from PIL import Image
res, iters, device, precs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split()
line = re.compile(r"step\s+(\d+).*?content\s+([0-9.e+-]+).*?style\s+([0-9.e+-]+).*?total\s+([0-9.e+-]+)")

def losses(*logs):
    out = {}
    for log in logs:
        try:
            text = open(os.path.join(res, log)).read()
        except OSError:
            continue
        for m in line.finditer(text):
            out[int(m.group(1))] = tuple(float(v) for v in m.groups()[1:])
    return out

summary = {"device": device}
runs = {p: losses(f"train-{p}.log") for p in precs}
window = max(1, iters // 10)
def tail_mean(run, col):
    steps = [s for s in run if s > iters - window]
    return sum(run[s][col] for s in steps) / len(steps) if steps else float("nan")
base = runs.get("fp32", {})
for p, run in runs.items():
    rec = {"steps": len(run)}
    if run:
        rec["first_total"] = run[min(run)][2]
        rec[f"last{window}_content"] = tail_mean(run, 0)
        rec[f"last{window}_style"] = tail_mean(run, 1)
        rec[f"last{window}_total"] = tail_mean(run, 2)
        if p != "fp32" and base:
            rec["total_vs_fp32"] = tail_mean(run, 2) / tail_mean(base, 2) - 1
            step1 = min(set(run) & set(base))
            rec["step1_total_vs_fp32"] = run[step1][2] / base[step1][2] - 1
    summary[f"train_{p}"] = rec
resumed = losses("resume-1.log", "resume-2.log")
if base and resumed:
    common = sorted(set(base) & set(resumed))
    later = [abs(resumed[s][2] / base[s][2] - 1) for s in common if s > iters // 2]
    # Before the resume both runs are uninterrupted: their spread is the device's own
    # run-to-run nondeterminism, the yardstick for the spread after the resume.
    before = [abs(resumed[s][2] / base[s][2] - 1) for s in common if s <= iters // 2]
    summary["resume"] = {"steps_compared": len(common),
                         "max_rel_diff_before_resume": max(before) if before else None,
                         "max_rel_diff_after_resume": max(later) if later else None,
                         "mean_rel_diff_before_resume": sum(before) / len(before) if before else None,
                         "mean_rel_diff_after_resume": sum(later) / len(later) if later else None,
                         "first_half_bitwise_equal": all(resumed[s] == base[s] for s in common if s <= iters // 2),
                         "second_half_bitwise_equal": all(resumed[s] == base[s] for s in common if s > iters // 2)}
try:
    summary["walls"] = [json.loads(l) for l in open(os.path.join(res, "walls.jsonl"))]
except OSError:
    pass

def load(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
ref_dir = os.path.join(res, "infer", "cpu-fp32")
for p in precs:
    d = os.path.join(res, "infer", f"{device}-{p}")
    diffs = []
    for ref in sorted(glob.glob(os.path.join(ref_dir, "*"))):
        other = os.path.join(d, os.path.basename(ref))
        if not os.path.exists(other):
            diffs.append({"file": os.path.basename(ref), "missing": True})
            continue
        a, b = load(ref), load(other)
        if a.shape != b.shape:
            diffs.append({"file": os.path.basename(ref), "shape": [a.shape, b.shape]})
            continue
        delta = np.abs(a - b)
        diffs.append({"file": os.path.basename(ref), "max": int(delta.max()), "mean": float(delta.mean()),
                      "over2": float((delta > 2).mean())})
    summary[f"infer_{p}_vs_cpu_fp32"] = diffs
# Half precision against CUDA fp32, the comparison the issue asks for.
for p in precs:
    if p == "fp32":
        continue
    d32 = os.path.join(res, "infer", f"{device}-fp32")
    d = os.path.join(res, "infer", f"{device}-{p}")
    worst = []
    for ref in sorted(glob.glob(os.path.join(d32, "*"))):
        other = os.path.join(d, os.path.basename(ref))
        if os.path.exists(other):
            delta = np.abs(load(ref) - load(other))
            worst.append({"file": os.path.basename(ref), "max": int(delta.max()), "mean": float(delta.mean()),
                          "p999": float(np.percentile(delta, 99.9))})
    summary[f"infer_{p}_vs_{device}_fp32"] = worst
json.dump(summary, open(os.path.join(res, "summary.json"), "w"), indent=1)
print(json.dumps(summary, indent=1))
EOF
