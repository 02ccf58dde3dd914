#!/usr/bin/env bash
# The GPU benchmark suite: faststyle against PyTorch on one CUDA GPU, in the same run, ending
# with one table of ratios (scripts/bench/table.py). A few minutes on an H100.
#
#   (a) one forward pass (batch 1) at $SIZES in fp32, fp16 and bf16, ours vs PyTorch eager
#       (torch_infer.py; same weights; cuDNN benchmark mode on for both)
#   (b) whole training steps, batch 4 at 256², real VGG16: images/s of ours in fp32, bf16 and
#       fp16 vs torch_train.py --mode faithful and --mode tuned; and the losses of our
#       mixed-precision runs against fp32 after the same number of steps from the same seed
#   (c) the data loader alone at 256² on COCO-sized JPEGs, ours vs PyTorch's DataLoader
#   (d) if target/release/infer is there: `infer` over a folder of those JPEGs (images/s)
#
# The GPU machine needs no Rust: build here (scripts/bench/build.sh), then bring along
#   target/release/speed-bench        the benchmark binary (required)
#   checkpoints/vgg16.safetensors     the real VGG16 weights (required)
#   datasets/sample                   photos the COCO-like JPEGs are made from (else
#                                     scikit-image's sample photos, else synthetic pictures)
#   target/release/infer              optional, for (d)
# and run `bash scripts/bench/gpu.sh` in the repository root. Binaries are run against the
# libtorch of the machine's PyTorch (found through $PYTHON, else /opt/torch/.venv/bin/python,
# else python3): it must be the same PyTorch release the binaries were built with (2.11.0).
#
# Settings (environment):
#   DEVICE=cuda (cpu: a quick check of the script itself, fp32 only, with tiny sizes)
#   SIZES=256,512,1024,2048,3840x2160  PRECISIONS=fp32,fp16,bf16  REPEAT=50 WARMUP=10
#   TRAIN_SIZE=256 TRAIN_ITERS=200 TRAIN_WARMUP=20 TRAIN_PRECISIONS=fp32,bf16,fp16
#   FAITHFUL_ITERS=100   TORCH_WORKERS=$(nproc)
#   DATA_COUNT=512 (640×480 JPEGs)  LOADER_BATCHES=1000  TORCH_LOADER_BATCHES=250
#   PARTS=forward,train,loader,infer   RESULTS=DIR   EXPORT_DIR=DIR (copies table + records)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

DEVICE="${DEVICE:-cuda}"
if [ "$DEVICE" = cpu ]; then
    # A check of the script on a machine without a GPU: small and fp32 only.
    SIZES="${SIZES:-64,48x32}"; PRECISIONS=fp32; TRAIN_PRECISIONS=fp32
    REPEAT="${REPEAT:-3}"; WARMUP="${WARMUP:-1}"
    TRAIN_SIZE="${TRAIN_SIZE:-64}"; TRAIN_ITERS="${TRAIN_ITERS:-2}"; TRAIN_WARMUP="${TRAIN_WARMUP:-1}"
    FAITHFUL_ITERS="${FAITHFUL_ITERS:-2}"; DATA_COUNT="${DATA_COUNT:-16}"
    LOADER_BATCHES="${LOADER_BATCHES:-10}"; TORCH_LOADER_BATCHES="${TORCH_LOADER_BATCHES:-10}"
    INFER_COUNT="${INFER_COUNT:-2}"
fi
SIZES="${SIZES:-256,512,1024,2048,3840x2160}"
PRECISIONS="${PRECISIONS:-fp32,fp16,bf16}"
REPEAT="${REPEAT:-50}"
WARMUP="${WARMUP:-10}"
TRAIN_SIZE="${TRAIN_SIZE:-256}"
TRAIN_ITERS="${TRAIN_ITERS:-200}"
TRAIN_WARMUP="${TRAIN_WARMUP:-20}"
TRAIN_PRECISIONS="${TRAIN_PRECISIONS:-fp32,bf16,fp16}"
FAITHFUL_ITERS="${FAITHFUL_ITERS:-100}"
DATA_COUNT="${DATA_COUNT:-512}"
LOADER_BATCHES="${LOADER_BATCHES:-1000}"
TORCH_LOADER_BATCHES="${TORCH_LOADER_BATCHES:-250}"
TORCH_WORKERS="${TORCH_WORKERS:-$(nproc)}"
INFER_COUNT="${INFER_COUNT:-$DATA_COUNT}"
PARTS="${PARTS:-forward,train,loader,infer}"
VGG="${VGG:-checkpoints/vgg16.safetensors}"
STYLE="${STYLE:-datasets/styles/udnie.jpg}"
RESULTS="${RESULTS:-target/bench/gpu-$(date +%Y%m%d-%H%M%S)}"
BENCH="${BENCH:-target/release/speed-bench}"
INFER="${INFER:-target/release/infer}"

say() { echo "bench_gpu: $*" >&2; }
want() { [[ ",$PARTS," == *",$1,"* ]]; }
die() { say "$*"; exit 1; }

# The Python with PyTorch, and its libtorch for our binaries.
if [ -z "${PYTHON:-}" ]; then
    for p in /opt/torch/.venv/bin/python "$root/.venv/bin/python" python3; do
        if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' 2>/dev/null; then PYTHON="$p"; break; fi
    done
fi
PY="${PYTHON:?no Python with torch found; set PYTHON}"
torch_lib="$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
torch_version="$("$PY" -c 'import torch; print(torch.__version__)')"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
case "$torch_version" in
    2.11.0*) ;;
    *) say "warning: $PY has torch $torch_version; the binaries were built against 2.11.0" ;;
esac

[ -x "$BENCH" ] || die "$BENCH is missing: build it where Rust is (bash scripts/bench/build.sh) and bring it along"
[ -f "$VGG" ] || die "$VGG is missing: bring checkpoints/vgg16.safetensors along (bash scripts/setup.sh makes it)"
[ -f "$STYLE" ] || die "$STYLE is missing"
"$BENCH" --help >/dev/null || die "$BENCH does not start (libtorch from $torch_lib)"
if [ "$DEVICE" != cpu ]; then
    "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
        || die "PyTorch sees no CUDA device (DEVICE=cpu checks the script without one)"
    "$BENCH" forward --device "$DEVICE" --sizes 32 --repeat 1 --warmup 0 >/dev/null \
        || die "$BENCH cannot use $DEVICE (is its libtorch_cuda linked? readelf -d $BENCH)"
fi

mkdir -p "$RESULTS"
work="target/bench"
mkdir -p "$work"
started=$(date +%s)

"$PY" - "$RESULTS/env.json" "$DEVICE" <<'EOF'
import json, os, subprocess, sys, torch
out, device = sys.argv[1:3]
cpu = ""
try:
    with open("/proc/cpuinfo") as f:
        cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
except (OSError, StopIteration):
    pass
env = {"device": device, "cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__}
if device != "cpu":
    env["gpu"] = torch.cuda.get_device_name(0)
    try:
        env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                       capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
json.dump(env, open(out, "w"))
EOF

model="$work/random-style.safetensors"
"$BENCH" save-model --out "$model" --seed 0 >/dev/null

# COCO-like JPEGs (640×480, a third portrait, quality 90): variations of real photos.
dataset="$work/coco-like-$DATA_COUNT"
src="datasets/sample"
if ! ls "$src"/*.* >/dev/null 2>&1; then
    src="$work/skimage-photos"
    mkdir -p "$src"
    "$PY" - "$src" <<'EOF' >&2 || true
# The photos that datasets/sample is made from, from scikit-image's own package data.
import sys
try:
    import skimage.data as d
    from PIL import Image
except ImportError:
    sys.exit("no scikit-image here: synthetic pictures instead")
n = 0
for name in ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket"):
    try:
        Image.fromarray(getattr(d, name)()).convert("RGB").save(f"{sys.argv[1]}/{name}.png")
        n += 1
    except Exception as e:  # e.g. a picture that is not shipped with the package
        print(f"skimage {name}: {e}")
print(f"{n} photos from scikit-image")
EOF
fi
"$BENCH" make-dataset --from "$src" --out "$dataset" --count "$DATA_COUNT" | tee "$RESULTS/dataset.jsonl" >&2

# (a) forward passes.
if want forward; then
    say "forward $SIZES, $PRECISIONS: faststyle"
    "$BENCH" forward --device "$DEVICE" --sizes "$SIZES" --precisions "$PRECISIONS" \
        --repeat "$REPEAT" --warmup "$WARMUP" --checkpoint "$model" | tee "$RESULTS/forward_faststyle.jsonl" >&2
    square="" rect=""
    IFS=, read -r -a sizes <<<"$SIZES"
    for s in "${sizes[@]}"; do
        if [[ "$s" == *x* ]]; then rect="${rect:+$rect,}$s"; else square="${square:+$square,}$s"; fi
    done
    if [ -n "$square" ]; then
        say "forward $square, $PRECISIONS: PyTorch eager"
        "$PY" scripts/bench/torch_infer.py --device "$DEVICE" --sizes "$square" --precisions "$PRECISIONS" \
            --repeat "$REPEAT" --warmup "$WARMUP" --cudnn-benchmark --checkpoint "$model" \
            --json "$RESULTS/forward_torch.json" >&2
    fi
    if [ -n "$rect" ]; then
        say "forward $rect, $PRECISIONS: PyTorch eager"
        "$PY" - "$model" "$DEVICE" "$PRECISIONS" "$rect" "$REPEAT" "$WARMUP" <<'EOF' | tee "$RESULTS/forward_torch_rect.jsonl" >&2
# torch_infer.py's measurement for W×H inputs (it takes square sizes only).
import json, statistics, sys, time
import torch
sys.path.insert(0, "scripts/bench")
import torch_infer as bi
ckpt, device, precs, sizes, repeat, warmup = sys.argv[1:7]
repeat, warmup = int(repeat), int(warmup)
torch.backends.cudnn.benchmark = True
dev = torch.device(device)
net0 = bi.load_model(ckpt).eval()
for prec in precs.split(","):
    dtype = bi.DTYPES[prec]
    net = bi.TransformerNet().eval()
    net.load_state_dict(net0.state_dict())
    net = net.to(device=dev, dtype=dtype)
    for s in sizes.split(","):
        w, h = (int(v) for v in s.lower().split("x"))
        rec = {"bench": "forward", "impl": "pytorch", "device": str(dev), "width": w, "height": h,
               "precision": prec}
        try:
            x = (torch.rand(1, 3, h, w) * 255).to(device=dev, dtype=dtype)
            times = []
            with torch.inference_mode():
                for _ in range(warmup):
                    net(x)
                bi.sync(dev)
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    net(x)
                    bi.sync(dev)
                    times.append((time.perf_counter() - t0) * 1e3)
            rec.update(median_ms=statistics.median(times), min_ms=min(times))
        except RuntimeError as e:
            rec["error"] = str(e).splitlines()[0]
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        print(json.dumps(rec), flush=True)
    del net
EOF
    fi
fi

# (b) training steps: ours in each precision from the same seed (so the losses compare), then
# PyTorch's example loop and the tuned loop on the same photos.
if want train; then
    IFS=, read -r -a tprecs <<<"$TRAIN_PRECISIONS"
    for p in "${tprecs[@]}"; do
        say "training step ${TRAIN_SIZE}², batch 4, $p: faststyle ($TRAIN_ITERS timed after $TRAIN_WARMUP)"
        "$BENCH" train-step --dataset "$dataset" --vgg "$VGG" --style "$STYLE" --image-size "$TRAIN_SIZE" \
            --batch-size 4 --iterations "$TRAIN_ITERS" --warmup "$TRAIN_WARMUP" --device "$DEVICE" \
            --precision "$p" --seed 42 | tee "$RESULTS/train_faststyle_$p.jsonl" >&2 \
            || say "training step $p failed"
    done
    say "training step ${TRAIN_SIZE}², batch 4: PyTorch faithful ($FAITHFUL_ITERS timed)"
    "$PY" scripts/bench/torch_train.py --dataset "$dataset" --vgg "$VGG" --style "$STYLE" --mode faithful \
        --device "$DEVICE" --batch-size 4 --image-size "$TRAIN_SIZE" --iterations "$FAITHFUL_ITERS" \
        --warmup "$TRAIN_WARMUP" --json "$RESULTS/train_torch_faithful.json" >&2
    say "training step ${TRAIN_SIZE}², batch 4: PyTorch tuned ($TRAIN_ITERS timed, $TORCH_WORKERS workers)"
    "$PY" scripts/bench/torch_train.py --dataset "$dataset" --vgg "$VGG" --style "$STYLE" --mode tuned \
        --device "$DEVICE" --batch-size 4 --image-size "$TRAIN_SIZE" --iterations "$TRAIN_ITERS" \
        --warmup "$TRAIN_WARMUP" --workers "$TORCH_WORKERS" --json "$RESULTS/train_torch_tuned.json" >&2
fi

# (c) the data loader alone at 256².
if want loader; then
    say "data loading 256², batch 4: faststyle ($LOADER_BATCHES batches over $DATA_COUNT files)"
    "$BENCH" loader --dataset "$dataset" --image-size 256 --batch-size 4 --batches "$LOADER_BATCHES" \
        | tee "$RESULTS/loader_faststyle.jsonl" >&2
    for mode in faithful tuned; do
        say "data loading 256², batch 4: PyTorch $mode ($TORCH_LOADER_BATCHES batches)"
        "$PY" scripts/bench/torch_train.py --loader-only --dataset "$dataset" --mode "$mode" \
            --workers "$TORCH_WORKERS" --iterations "$TORCH_LOADER_BATCHES" --warmup 2 --image-size 256 \
            --batch-size 4 --device "$DEVICE" | tee -a "$RESULTS/loader_torch.jsonl" >&2
    done
fi

# (d) `infer` over a folder of photos, with the forward time at that size for comparison.
if want infer && [ -x "$INFER" ]; then
    iprec=fp16
    [ "$DEVICE" = cpu ] && iprec=fp32
    photos="$work/infer-in-$INFER_COUNT"
    out="$work/infer-out"
    rm -rf "$photos" "$out"
    mkdir -p "$photos"
    mapfile -t files < <(find "$dataset" -name '*.jpg' | sort)
    cp "${files[@]:0:$INFER_COUNT}" "$photos/"
    # One photo first: the start-up (process, CUDA, model, cuDNN tuning) to set apart.
    t0=$(date +%s.%N)
    "$INFER" --checkpoint "$model" "${files[0]}" --output "$work/infer-one.jpg" --device "$DEVICE" \
        --precision "$iprec" >&2 || true
    t1=$(date +%s.%N)
    rm -f "$work/infer-one.jpg"
    say "infer over $INFER_COUNT photos (640×480 JPEG), $iprec"
    "$INFER" --checkpoint "$model" "$photos" --output "$out" --device "$DEVICE" --precision "$iprec" >&2 \
        && ok=True || ok=False
    t2=$(date +%s.%N)
    n=$(find "$out" -name '*.jpg' 2>/dev/null | wc -l)
    "$PY" -c "import json; one = $t1 - $t0; w = $t2 - $t1; print(json.dumps({'bench': 'infer-folder',
        'impl': 'faststyle', 'device': '$DEVICE', 'precision': '$iprec', 'width': 640, 'height': 480,
        'images': $n, 'ok': $ok, 'wall_s': w, 'one_image_wall_s': one, 'images_per_s': $n / w,
        'images_per_s_after_startup': ($n - 1) / max(w - one, 1e-9)}))" | tee "$RESULTS/infer_folder.jsonl" >&2
    if [ "$DEVICE" != cpu ]; then
        "$BENCH" forward --device "$DEVICE" --sizes 640x480,480x640 --precisions "$iprec" --repeat "$REPEAT" \
            --warmup "$WARMUP" --checkpoint "$model" | tee -a "$RESULTS/forward_faststyle.jsonl" >&2
    fi
elif want infer; then
    say "no $INFER here: the folder job is left out"
fi

"$PY" - "$RESULTS/env.json" "$started" <<'EOF'
import json, sys, time
env = json.load(open(sys.argv[1]))
env["suite minutes"] = round((time.time() - int(sys.argv[2])) / 60, 1)
json.dump(env, open(sys.argv[1], "w"))
EOF
title="faststyle vs PyTorch on $DEVICE"
"$PY" scripts/bench/table.py speed "$RESULTS" --title "$title" --markdown "$RESULTS/table.md" \
    --jsonl "$RESULTS/records.jsonl"
if [ -n "${EXPORT_DIR:-}" ]; then
    mkdir -p "$EXPORT_DIR"
    cp "$RESULTS/table.md" "$RESULTS/records.jsonl" "$EXPORT_DIR/"
    tar -czf "$EXPORT_DIR/raw-results.tar.gz" -C "$(dirname "$RESULTS")" "$(basename "$RESULTS")"
fi
say "results in $RESULTS (table.md, records.jsonl, raw files)"
