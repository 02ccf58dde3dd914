#!/usr/bin/env bash
# The deployment benchmark on the CPU: faststyle's `infer` path against ONNX Runtime (running
# the model exported by scripts/export_onnx.py) and PyTorch eager, same weights, same run,
# ending with one table of ratios (scripts/bench/table.py deploy).
#
#   (a) forward: one forward pass at each of $SIZES with each of $THREADS thread counts:
#       ours (speed-bench forward), PyTorch eager (torch_infer.py), ONNX Runtime
#       (onnx_runtime.py); a bf16 row for ours when `infer --precision bf16 --device cpu` is
#       accepted on this CPU (skipped, with the reason, otherwise)
#   (b) job: the whole job on one photo as a process (load, decode, stylize, encode), wall
#       time and peak RSS (/usr/bin/time -v), median of $JOB_REPS, ours vs ONNX Runtime vs PyTorch
#   (c) memory: `infer` on photos of $MEM_SIZES (WxH), tiled (--tile auto) and untiled
#       (--tile off, where the untiled peak fits the machine), peak RSS and seconds per megapixel
#
# usage: scripts/bench/deploy.sh      (run it under `flock -x /tmp/cpu.lock` on a shared machine)
# Settings (environment): SIZES=512,1024,2048  THREADS=1,$(nproc)  PARTS=forward,job,memory
#   JOB_IMAGE=datasets/sample/astronaut.png JOB_REPS=3
#   MEM_SIZES=1024x1024,2048x2048,3840x2160,4000x3000,8000x6000  UNTILED_MAX_MP=13
#   NO_BUILD=1 (skip scripts/bench/build.sh)   RESULTS=DIR
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

PY="${PYTHON:-$root/.venv/bin/python}"
SIZES="${SIZES:-512,1024,2048}"
THREADS="${THREADS:-1,$(nproc)}"
PARTS="${PARTS:-forward,job,memory}"
JOB_IMAGE="${JOB_IMAGE:-datasets/sample/astronaut.png}"
JOB_REPS="${JOB_REPS:-3}"
MEM_SIZES="${MEM_SIZES:-1024x1024,2048x2048,3840x2160,4000x3000,8000x6000}"
UNTILED_MAX_MP="${UNTILED_MAX_MP:-13}"
RESULTS="${RESULTS:-target/bench/deploy-$(date +%Y%m%d-%H%M%S)}"
BENCH="target/release/speed-bench"
INFER="target/release/infer"
TIME=/usr/bin/time

say() { echo "bench_deploy: $*" >&2; }
want() { [[ ",$PARTS," == *",$1,"* ]]; }

if [ "${NO_BUILD:-0}" != 1 ]; then
    bash scripts/bench/build.sh
fi
for f in "$BENCH" "$INFER"; do
    [ -x "$f" ] || { say "$f is missing: run scripts/bench/build.sh"; exit 1; }
done
[ -x "$TIME" ] || { say "$TIME is missing (GNU time): apt-get install -y time"; exit 1; }
"$PY" -c 'import torch, onnxruntime, PIL' || { say "$PY lacks torch, onnxruntime or PIL: bash scripts/setup.sh"; exit 1; }

mkdir -p "$RESULTS"
work="target/bench/deploy-work"
mkdir -p "$work"
"$PY" - "$RESULTS/env.json" <<'PYEOF'
import json, os, subprocess, sys, torch, onnxruntime
cpu = ""
flags = ""
with open("/proc/cpuinfo") as f:
    for line in f:
        if line.startswith("model name") and not cpu:
            cpu = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = line.split(":", 1)[1]
isa = [x for x in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {x} " in f" {flags} "]
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
json.dump({"cpu": cpu, "isa": " ".join(isa), "cores": os.cpu_count(), "torch": torch.__version__,
           "onnxruntime": onnxruntime.__version__, "load average at start": round(os.getloadavg()[0], 2),
           "git": rev}, open(sys.argv[1], "w"))
PYEOF

model="$work/random-style.safetensors"
"$BENCH" save-model --out "$model" --seed 0 >/dev/null
onnx="$work/random-style.onnx"
"$PY" scripts/export_onnx.py "$model" "$onnx" >&2

# Whether this build and CPU take bfloat16 (the CPU bf16 path is another change's).
bf16=0
tiny="$work/tiny.png"
"$PY" -c "from PIL import Image; Image.new('RGB', (16, 16), (90, 120, 150)).save('$tiny')"
if bf16_msg=$("$INFER" -c "$model" "$tiny" -o "$work/tiny-out.png" --device cpu --precision bf16 2>&1); then
    bf16=1
else
    say "bf16 row skipped: $bf16_msg"
    echo "{\"bench\": \"note\", \"text\": \"bf16 skipped: $(echo "$bf16_msg" | head -1 | tr -d '"')\"}" >>"$RESULTS/notes.jsonl"
fi

if want forward; then
    IFS=, read -r -a sizes <<<"$SIZES"
    IFS=, read -r -a threads <<<"$THREADS"
    for s in "${sizes[@]}"; do
        if [ "$s" -le 512 ]; then rep=5; elif [ "$s" -le 1024 ]; then rep=3; else rep=2; fi
        for t in "${threads[@]}"; do
            say "forward ${s}², $t threads: faststyle, PyTorch, ONNX Runtime ($rep timed, 1 warm-up)"
            precisions=fp32
            [ "$bf16" = 1 ] && precisions=fp32,bf16
            OMP_NUM_THREADS=$t "$BENCH" forward --sizes "$s" --device cpu --precisions "$precisions" \
                --repeat $rep --warmup 1 --checkpoint "$model" | tee -a "$RESULTS/forward_faststyle.jsonl" >&2
            "$PY" scripts/bench/torch_infer.py --sizes "$s" --device cpu --precisions fp32 --threads "$t" \
                --repeat $rep --warmup 1 --checkpoint "$model" --json "$RESULTS/forward_torch_${s}_$t.json" >&2
            "$PY" scripts/bench/onnx_runtime.py "$onnx" --sizes "$s" --threads "$t" --repeat $rep --warmup 1 \
                --json "$RESULTS/forward_onnx.jsonl" >&2
        done
    done
fi

if want job; then
    out="$work/job-out"
    mkdir -p "$out"
    ours=("$INFER" --checkpoint "$model" "$JOB_IMAGE" --device cpu)
    onnxjob=("$PY" scripts/bench/onnx_runtime.py "$onnx" --whole-job "$JOB_IMAGE")
    torchjob=("$PY" scripts/bench/torch_infer.py --checkpoint "$model" --device cpu --whole-job "$JOB_IMAGE")
    say "whole job on $JOB_IMAGE: $JOB_REPS runs each, alternating"
    "${ours[@]}" --output "$out/warm.png"; "${onnxjob[@]}" "$out/warm-onnx.png"; "${torchjob[@]}" "$out/warm-torch.png"
    for i in $(seq 1 "$JOB_REPS"); do
        $TIME -v -o "$RESULTS/job_faststyle_$i.time" "${ours[@]}" --output "$out/ours.png"
        $TIME -v -o "$RESULTS/job_onnxruntime_$i.time" "${onnxjob[@]}" "$out/onnx.png"
        $TIME -v -o "$RESULTS/job_pytorch_$i.time" "${torchjob[@]}" "$out/torch.png"
    done
fi

if want memory; then
    IFS=, read -r -a msizes <<<"$MEM_SIZES"
    src="${MEM_SOURCE:-datasets/sample/hubble_deep_field.jpg}"
    for s in "${msizes[@]}"; do
        w="${s%%x*}"; h="${s##*x}"
        photo="$work/photo-$s.jpg"
        [ -f "$photo" ] || "$PY" - "$src" "$photo" "$w" "$h" <<'PYEOF'
import sys
from PIL import Image
Image.MAX_IMAGE_PIXELS = None
src, out, w, h = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
Image.open(src).convert("RGB").resize((w, h), Image.LANCZOS).save(out, quality=92)
PYEOF
        modes="auto"
        if [ $((w * h)) -le $((UNTILED_MAX_MP * 1000000)) ]; then modes="auto off"; fi
        for mode in $modes; do
            say "memory: $s, --tile $mode"
            $TIME -v -o "$RESULTS/mem_${s}_$mode.time" "$INFER" -c "$model" "$photo" -o "$work/mem-$s-$mode.png" \
                --device cpu --tile "$mode" || say "$s --tile $mode failed"
        done
        if [ -f "$work/mem-$s-off.png" ] && [ -f "$work/mem-$s-auto.png" ]; then
            "$PY" - "$work/mem-$s-off.png" "$work/mem-$s-auto.png" "$s" >>"$RESULTS/tiled_diff.jsonl" <<'PYEOF'
import json, sys
import numpy as np
from PIL import Image
Image.MAX_IMAGE_PIXELS = None
a, b = (np.asarray(Image.open(p), dtype=np.int16) for p in sys.argv[1:3])
d = np.abs(a - b)
print(json.dumps({"bench": "tiled-diff", "size": sys.argv[3], "max": int(d.max()),
                  "mean": float(d.mean()), "share_differing": float((d > 0).mean())}))
PYEOF
        fi
        rm -f "$work/mem-$s-off.png" "$work/mem-$s-auto.png"
    done
fi

"$PY" scripts/bench/table.py deploy "$RESULTS" --markdown "$RESULTS/table.md"
say "results in $RESULTS"
