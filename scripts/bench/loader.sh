#!/usr/bin/env bash
# usage: scripts/bench/loader.sh [OUT]     (default OUT: target/bench/loader)
#
# The data loader alone (decode, resize, centre crop, batch), ours against PyTorch's
# DataLoader over PIL (scripts/bench/torch_train.py --loader-only --mode tuned: uint8
# batches, shuffled), on COCO-like 640x480 JPEGs (speed-bench make-dataset), at 256², batch 4.
# Kinds take turns, ROUNDS rounds, each timed part under `flock /work/bench.lock`:
#   ours with 1 and 2 decoding threads (and THREADS, e.g. 16 on a large machine),
#   PIL with 1 and 2 DataLoader workers (and THREADS).
# Prints a table of images/s, images/s per core and the scaling from 1 to 2 threads.
# Settings: ROUNDS (3), BATCHES (150), COUNT (64 JPEGs), THREADS ("1 2").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
OUT="${1:-target/bench/loader}"
ROUNDS="${ROUNDS:-3}"
BATCHES="${BATCHES:-150}"
COUNT="${COUNT:-64}"
THREADS="${THREADS:-1 2}"
PY="$root/.venv/bin/python"
BENCH=target/release/speed-bench
LOCK="${LOCK:-/work/bench.lock}"
[ -x "$BENCH" ] || { echo "loader.sh: run scripts/bench/build.sh first" >&2; exit 1; }
mkdir -p "$OUT"
dataset="$OUT/coco-like-$COUNT"
"$BENCH" make-dataset --from datasets/sample --out "$dataset" --count "$COUNT" > "$OUT/dataset.jsonl"
: > "$OUT/loader.jsonl"
echo "{\"uptime\": \"$(uptime)\", \"when\": \"start\"}" > "$OUT/busy.jsonl"
for ((r = 1; r <= ROUNDS; r++)); do
    for t in $THREADS; do
        flock "$LOCK" "$BENCH" loader --dataset "$dataset" --image-size 256 --batch-size 4 \
            --batches "$BATCHES" --threads "$t" | sed "s/^{/{\"round\": $r, /" >> "$OUT/loader.jsonl"
        flock "$LOCK" "$PY" scripts/bench/torch_train.py --loader-only --dataset "$dataset" \
            --mode tuned --workers "$t" --image-size 256 --batch-size 4 --iterations "$BATCHES" \
            --device cpu | sed "s/^{/{\"round\": $r, /" >> "$OUT/loader.jsonl"
    done
done
echo "{\"uptime\": \"$(uptime)\", \"when\": \"end\"}" >> "$OUT/busy.jsonl"
"$PY" - "$OUT/loader.jsonl" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    key = ("faststyle", r["threads"]) if r["impl"] == "faststyle" else ("PIL DataLoader", r["workers"])
    by.setdefault(key, []).append(r["images_per_s"])
print("| loader, 256² crops of 640×480 JPEGs, batch 4 | threads / workers | images/s (median of rounds) | images/s per core | 1 → 2 scaling |")
print("|---|---|---|---|---|")
for impl in ("faststyle", "PIL DataLoader"):
    base = None
    for (i, t), v in sorted(by.items()):
        if i != impl:
            continue
        m = statistics.median(v)
        base = base or (m if t == 1 else None)
        scale = f"{m / base:.2f}×" if base and t == 2 else ""
        print(f"| {impl} | {t} | {m:.1f} | {m / t:.1f} | {scale} |")
PYEOF
