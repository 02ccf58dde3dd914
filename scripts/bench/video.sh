#!/usr/bin/env bash
# Video benchmark: `infer` on a clip end to end (decode, network, encode, sound copied) against
# scripts/bench/torch_video.py doing the same job with PyTorch, in the same run, on the same
# clip and weights; plus the network's own frames/s at that size (speed-bench forward).
#
#   DEVICE=cpu  bash scripts/bench/video.sh     # here: 320×240, 4 s, fp32
#   DEVICE=cuda bash scripts/bench/video.sh     # GPU machine: 1920×1080, 10 s, fp16 (and bf16)
#
# Needs target/release/infer and target/release/speed-bench (bash scripts/bench/build.sh), a
# Python with torch 2.11.0 (PYTHON, else .venv/bin/python, else /opt/torch/.venv/bin/python,
# else python3) and an ffmpeg with libx264: FASTSTYLE_FFMPEG, else ffmpeg on PATH, else
# ./bench-ffmpeg, ./bench-ffmpeg.xz or ./bench-ffmpeg.gz in the repository root (a copy carried
# along, as the GPU machine has none: `xz -T0 -c .venv/bin/ffmpeg > bench-ffmpeg.xz` here, about
# 50 MB; gzip -9 about 70 MB), else .venv/bin/ffmpeg, else imageio-ffmpeg's (in PYTHON's env).
# The binaries run against that Python's libtorch (LD_LIBRARY_PATH), as in gpu.sh.
#
# Settings: SIZE=WxH CLIP_SECONDS=N RATE=30 PRECISIONS=fp32|fp16,bf16 REPEAT=2 RESULTS=DIR
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

DEVICE="${DEVICE:-cpu}"
if [ "$DEVICE" = cpu ]; then
    SIZE="${SIZE:-320x240}"; CLIP_SECONDS="${CLIP_SECONDS:-4}"; PRECISIONS="${PRECISIONS:-fp32}"
else
    SIZE="${SIZE:-1920x1080}"; CLIP_SECONDS="${CLIP_SECONDS:-10}"; PRECISIONS="${PRECISIONS:-fp16,bf16}"
fi
RATE="${RATE:-30}"
REPEAT="${REPEAT:-2}"
RESULTS="${RESULTS:-target/bench/video-$DEVICE-$(date +%Y%m%d-%H%M%S)}"
INFER="${INFER:-target/release/infer}"
BENCH="${BENCH:-target/release/speed-bench}"
say() { echo "bench_video: $*" >&2; }
die() { say "$*"; exit 1; }

if [ -z "${PYTHON:-}" ]; then
    for p in "$root/.venv/bin/python" /opt/torch/.venv/bin/python python3; do
        if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' 2>/dev/null; then PYTHON="$p"; break; fi
    done
fi
PY="${PYTHON:?no Python with torch found; set PYTHON}"
torch_lib="$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# The ffmpeg both sides use.
ff="${FASTSTYLE_FFMPEG:-}"
[ -z "$ff" ] && ff="$(command -v ffmpeg || true)"
if [ -z "$ff" ] && [ -x bench-ffmpeg ]; then ff="$root/bench-ffmpeg"; fi
for packed in bench-ffmpeg.xz bench-ffmpeg.gz; do
    if [ -z "$ff" ] && [ -f "$packed" ]; then
        mkdir -p target
        case "$packed" in *.xz) xz -dc "$packed" ;; *) gzip -dc "$packed" ;; esac > target/bench-ffmpeg
        chmod +x target/bench-ffmpeg && ff="$root/target/bench-ffmpeg"
    fi
done
if [ -z "$ff" ] && [ -x .venv/bin/ffmpeg ]; then ff="$root/.venv/bin/ffmpeg"; fi
[ -z "$ff" ] && ff="$("$PY" -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())' 2>/dev/null || true)"
[ -n "$ff" ] && [ -x "$ff" ] || die "no ffmpeg: set FASTSTYLE_FFMPEG, or bring bench-ffmpeg.gz (see the top of this script)"
export FASTSTYLE_FFMPEG="$ff"
[ -x "$INFER" ] || die "$INFER is missing (bash scripts/bench/build.sh)"
[ -x "$BENCH" ] || die "$BENCH is missing (bash scripts/bench/build.sh)"

mkdir -p "$RESULTS"
work="target/bench/video"
mkdir -p "$work"
clip="$work/clip-$SIZE-$CLIP_SECONDS.mp4"
if [ ! -f "$clip" ]; then
    say "making a $SIZE, ${CLIP_SECONDS} s, $RATE fps clip with sound"
    "$ff" -v error -y -f lavfi -i "testsrc2=size=$SIZE:rate=$RATE:duration=$CLIP_SECONDS" \
        -f lavfi -i "sine=frequency=440:duration=$CLIP_SECONDS" -c:v libx264 -crf 18 -pix_fmt yuv420p \
        -c:a aac -shortest "$clip"
fi
model="$work/random-style.safetensors"
"$BENCH" save-model --out "$model" --seed 0 >/dev/null
frames=$(( CLIP_SECONDS * RATE ))
w="${SIZE%x*}"; h="${SIZE#*x}"

IFS=, read -r -a precs <<<"$PRECISIONS"
for prec in "${precs[@]}"; do
    # The batch infer picks: 1 on the CPU, up to 8 frames of 8 Mpixel in all on CUDA.
    batch=1
    if [ "$DEVICE" != cpu ]; then
        batch=$(( 8388608 / (w * h) ))
        if [ "$batch" -gt 8 ]; then batch=8; fi
        if [ "$batch" -lt 1 ]; then batch=1; fi
    fi
    for r in $(seq 1 "$REPEAT"); do
        out="$work/ours.mp4"
        rm -f "$out"
        t0=$(date +%s.%N)
        "$INFER" -c "$model" "$clip" -o "$out" --device "$DEVICE" --precision "$prec" >&2
        t1=$(date +%s.%N)
        "$PY" -c "import json; s = $t1 - $t0; print(json.dumps({'bench': 'video', 'impl': 'faststyle',
            'device': '$DEVICE', 'precision': '$prec', 'batch': $batch, 'width': $w, 'height': $h,
            'frames': $frames, 'seconds': s, 'frames_per_s': $frames / s}))" | tee -a "$RESULTS/video.jsonl"
        "$PY" scripts/bench/torch_video.py "$clip" "$work/torch.mp4" --checkpoint "$model" --device "$DEVICE" \
            --precision "$prec" --batch "$batch" --ffmpeg "$ff" | tee -a "$RESULTS/video.jsonl"
    done
    say "network alone at $SIZE, $prec"
    "$BENCH" forward --device "$DEVICE" --sizes "$SIZE" --precisions "$prec" --repeat 10 --warmup 3 \
        --checkpoint "$model" | tee -a "$RESULTS/forward.jsonl"
done

"$PY" - "$RESULTS" <<'EOF'
# Best of the repeats per (impl, precision); the forward pass as frames/s.
import json, sys
d = sys.argv[1]
best = {}
for line in open(f"{d}/video.jsonl"):
    r = json.loads(line)
    k = (r["impl"], r["precision"])
    if k not in best or r["frames_per_s"] > best[k]["frames_per_s"]:
        best[k] = r
rows = ["| what | faststyle | PyTorch script | ratio |", "|---|---|---|---|"]
for prec in sorted({k[1] for k in best}):
    ours, torch_ = best.get(("faststyle", prec)), best.get(("pytorch", prec))
    if ours and torch_:
        rows.append(f"| {ours['width']}x{ours['height']} video end to end, {ours['device']} {prec}, "
                    f"{ours['frames']} frames | {ours['frames_per_s']:.2f} frames/s | "
                    f"{torch_['frames_per_s']:.2f} frames/s | {ours['frames_per_s'] / torch_['frames_per_s']:.2f}x |")
for line in open(f"{d}/forward.jsonl"):
    r = json.loads(line)
    if "median_ms" in r:
        rows.append(f"| network alone {r.get('width', '?')}x{r.get('height', '?')} {r['precision']} | "
                    f"{1000 / r['median_ms']:.2f} frames/s | | |")
open(f"{d}/table.md", "w").write("\n".join(rows) + "\n")
print("\n".join(rows))
EOF
say "results in $RESULTS"
