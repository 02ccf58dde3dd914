#!/usr/bin/env bash
# Load benchmark of `infer --serve` (not a test): a real HTTP load generator (oha) against the
# server on loopback, bounded in requests and time. Reports throughput, p50/p99 latency and
# status counts at a concurrency the queue holds and at an overload, the server's peak memory,
# and as the baseline measured in the same run, `infer` itself over the same photos as files.
#
#   bash scripts/bench/serve.sh [MODEL.safetensors]     # default: a random-weight model
#
# On the CPU here: cargo build --release; cargo install oha (or OHA=path). On a GPU machine
# with PyTorch 2.11.0 but no Rust: bring target/release/infer, the oha binary (OHA=path),
# scripts/ and datasets/sample (or PHOTO=file), and run `DEVICE=cuda bash scripts/bench/serve.sh`;
# the binaries run against that machine's libtorch (LD_LIBRARY_PATH to torch's lib).
#
# Settings (environment), defaults for DEVICE=cpu / DEVICE=cuda:
#   PRECISION=fp32 (cuda: fp16)      SIZE=256 / 1024 (max_size: the photo's longer side)
#   PHOTO=datasets/sample/hubble_deep_field.jpg (1000×872)
#   REQUESTS=100 / 2000              CONCURRENCY=4 / 32 (within the queue)
#   QUEUE=16 / 64                    OVERLOAD=64 / 512 (concurrency well past the queue)
#   BASELINE=16 / 200 files          LIMIT=240 s per load run
#   INFER=target/release/infer  OHA=oha  PYTHON=(a Python with torch)  RESULTS=DIR
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

DEVICE="${DEVICE:-cpu}"
if [ "$DEVICE" = cpu ]; then
    PRECISION="${PRECISION:-fp32}"; SIZE="${SIZE:-256}"; REQUESTS="${REQUESTS:-100}"
    CONCURRENCY="${CONCURRENCY:-4}"; QUEUE="${QUEUE:-16}"; OVERLOAD="${OVERLOAD:-64}"
    BASELINE="${BASELINE:-16}"
else
    PRECISION="${PRECISION:-fp16}"; SIZE="${SIZE:-1024}"; REQUESTS="${REQUESTS:-2000}"
    CONCURRENCY="${CONCURRENCY:-32}"; QUEUE="${QUEUE:-64}"; OVERLOAD="${OVERLOAD:-512}"
    BASELINE="${BASELINE:-200}"
fi
LIMIT="${LIMIT:-240}"
PHOTO="${PHOTO:-datasets/sample/hubble_deep_field.jpg}"
INFER="${INFER:-target/release/infer}"
OHA="${OHA:-oha}"
RESULTS="${RESULTS:-target/bench/serve-$DEVICE-$(date +%Y%m%d-%H%M%S)}"

say() { echo "bench_serve: $*" >&2; }
die() { say "$*"; exit 1; }
[ -x "$INFER" ] || die "$INFER is missing (cargo build --release)"
command -v "$OHA" >/dev/null || die "oha is missing (cargo install oha, or OHA=path)"
[ -f "$PHOTO" ] || die "$PHOTO is missing (scripts/make_sample_dataset.sh, or PHOTO=file)"

# A Python with torch: it makes the random model, and its libtorch serves carried binaries.
if [ -z "${PYTHON:-}" ]; then
    for p in "$root/.venv/bin/python" /opt/torch/.venv/bin/python python3; do
        if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' 2>/dev/null; then PYTHON="$p"; break; fi
    done
fi
PY="${PYTHON:?no Python with torch found; set PYTHON}"
torch_lib="$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

mkdir -p "$RESULTS/models" "$RESULTS/photos"
model="${1:-${MODEL:-}}"
if [ -n "$model" ]; then
    cp "$model" "$RESULTS/models/bench.safetensors"
else
    say "writing a random-weight model (speed does not depend on the weights)"
    "$PY" - "$RESULTS/models/bench.safetensors" <<'EOF'
import sys, torch
sys.path.insert(0, "scripts")
from torch_net import TransformerNet
from safetensors.torch import save_file
torch.manual_seed(0)
save_file({k: v.contiguous() for k, v in TransformerNet().state_dict().items()}, sys.argv[1])
EOF
fi
ext="${PHOTO##*.}"
case "${ext,,}" in jpg|jpeg) mime=image/jpeg ;; png) mime=image/png ;; webp) mime=image/webp ;; *) mime=application/octet-stream ;; esac

# Baseline: `infer` over BASELINE copies of the photo, same size, same device; its rate is
# (BASELINE - 1) / (time for BASELINE files - time for 1 file), without start-up and loading.
for i in $(seq 1 "$BASELINE"); do cp "$PHOTO" "$RESULTS/photos/p$i.$ext"; done
run_infer() {  # prints the seconds `infer` takes over $1
    local start end
    start=$(date +%s.%N)
    "$INFER" -c "$RESULTS/models/bench.safetensors" "$1" -o "$RESULTS/stylized-$2" \
        --max-size "$SIZE" --device "$DEVICE" --precision "$PRECISION" 2> "$RESULTS/infer.err"
    end=$(date +%s.%N)
    "$PY" -c "print($end - $start)"
}
say "baseline: infer over 1 and over $BASELINE files at max size $SIZE on $DEVICE"
one=$(run_infer "$RESULTS/photos/p1.$ext" one.$ext)
all=$(run_infer "$RESULTS/photos" all)
echo "$BASELINE $one $all" > "$RESULTS/baseline.txt"

say "starting the server"
"$INFER" --serve 127.0.0.1:0 --models "$RESULTS/models" --device "$DEVICE" --precision "$PRECISION" \
    --queue "$QUEUE" > "$RESULTS/server.out" 2> "$RESULTS/server.err" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    grep -q "http://" "$RESULTS/server.out" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || die "the server did not start: $(cat "$RESULTS/server.err")"
    sleep 0.2
done
url="$(grep -o 'http://[^ ]*' "$RESULTS/server.out" | head -1)"
url="${url%/}"
target="$url/v1/stylize?model=bench&max_size=$SIZE"
say "server at $url (pid $server)"

load() {  # NAME REQUESTS CONCURRENCY
    say "$1: $2 requests, $3 at a time"
    echo "$3" > "$RESULTS/$1.concurrency"
    timeout "$LIMIT" "$OHA" --no-tui --output-format json -n "$2" -c "$3" -t 120s \
        -m POST -D "$PHOTO" -T "$mime" "$target" > "$RESULTS/$1.json" \
        || say "$1: oha stopped early (limit ${LIMIT}s)"
}
load warmup 8 2
idle_kib=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
load steady "$REQUESTS" "$CONCURRENCY"
load overload "$((REQUESTS * 2))" "$OVERLOAD"
peak_kib=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
gpu_mib=""
if [ "$DEVICE" != cpu ] && command -v nvidia-smi >/dev/null; then
    gpu_mib=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits \
        | awk -F', ' -v p="$server" '$1 == p {print $2}')
fi
"$OHA" --version > "$RESULTS/oha-version.txt" 2>&1 || true
# The server's own counters (python's urllib: no curl needed).
"$PY" -c "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())" \
    "$url/metrics" > "$RESULTS/metrics.txt"

kill -TERM "$server"
set +e
wait "$server"
code=$?
set -e
trap - EXIT
say "server stopped with exit code $code"

"$PY" - "$RESULTS" "$DEVICE" "$PRECISION" "$SIZE" "$QUEUE" "$idle_kib" "$peak_kib" "${gpu_mib:-}" "$code" <<'EOF' | tee "$RESULTS/summary.md"
import json, re, sys
from pathlib import Path
out, device, precision, size, queue, idle_kib, peak_kib, gpu_mib, code = sys.argv[1:]
out = Path(out)
n, one, all_ = open(out / "baseline.txt").read().split()
baseline = (int(n) - 1) / (float(all_) - float(one))
metrics = open(out / "metrics.txt").read()
def metric(name):
    m = re.search(rf"^{name} ([0-9.e+]+)$", metrics, re.M)
    return float(m.group(1)) if m else float("nan")
batch = metric("faststyle_batch_size_sum") / max(metric("faststyle_batch_size_count"), 1)
print(f"# infer --serve under load: {device} {precision}, photos at max size {size}, --queue {queue}\n")
print("| run | requests | concurrency | statuses | ok/s | p50 | p99 | vs `infer` over files |")
print("|---|---|---|---|---|---|---|---|")
for run in ["steady", "overload"]:
    r = json.load(open(out / f"{run}.json"))
    codes = r.get("statusCodeDistribution", {})
    total = sum(codes.values()) + sum(r.get("errorDistribution", {}).values())
    ok = codes.get("200", 0)
    seconds = r["summary"]["total"]
    ok_rate = ok / seconds if seconds else 0
    p = r.get("latencyPercentiles", {})
    statuses = ", ".join(f"{c}: {k}" for c, k in sorted(codes.items()))
    errors = ", ".join(f"{e}: {k}" for e, k in r.get("errorDistribution", {}).items())
    if errors:
        statuses += f"; errors {errors}"
    conc = open(out / f"{run}.concurrency").read().strip()
    print(f"| {run} | {total} | {conc} | {statuses} | {ok_rate:.1f} | {p.get('p50', 0)*1000:.0f} ms "
          f"| {p.get('p99', 0)*1000:.0f} ms | {ok_rate / baseline:.2f}× |")
print(f"\nBaseline: `infer` over {n} files: {baseline:.2f} images/s after start-up (one process, same size and device).")
print(f"Server memory: {int(idle_kib)/1024:.0f} MiB resident after warm-up, peak {int(peak_kib)/1024:.0f} MiB"
      + (f"; GPU {gpu_mib} MiB" if gpu_mib else "") + ".")
print(f"Mean batch through the network: {batch:.2f}; images stylized: {metric('faststyle_images_stylized_total'):.0f}; "
      f"exit code after SIGTERM: {code}.")
EOF
say "results in $RESULTS"
