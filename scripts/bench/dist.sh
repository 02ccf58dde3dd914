#!/usr/bin/env bash
# usage: scripts/bench/dist.sh [OUT]     (default OUT: target/bench/dist)
#
# Data-parallel scaling on one machine's CPU: the same run (global batch 4 at 128 px, bf16,
# real VGG16, Udnie, ITERATIONS iterations) as one process on one thread, two torchrun
# processes of one thread each (Gloo), and one process on two threads, ROUNDS rounds taking
# turns. Prints JSON lines: wall seconds of the whole command (start-up included) and
# train's own images/s over its last logged steps. Settings: ROUNDS (3), ITERATIONS (40).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
OUT="${1:-target/bench/dist}"
ROUNDS="${ROUNDS:-3}"
ITERATIONS="${ITERATIONS:-40}"
common=(--recipe example --dataset datasets/sample --style datasets/styles/udnie.jpg --image-size 128 --batch-size 4
        --iterations "$ITERATIONS" --device cpu --precision bf16 --val none --log-every 10
        --image-every 1000000 --checkpoint-every 1000000)
mkdir -p "$OUT"
run() {  # KIND PROCESSES THREADS
    local kind=$1 procs=$2 threads=$3 dir="$OUT/run" start end cmd
    rm -rf "$dir"
    cmd=(target/release/train "${common[@]}" --out "$dir" --logdir "$dir/logs")
    [ "$procs" -gt 1 ] && cmd=(.venv/bin/torchrun --standalone --nproc-per-node "$procs" --no-python "${cmd[@]}")
    start=$(date +%s.%N)
    OMP_NUM_THREADS=$threads "${cmd[@]}" > "$OUT/$kind.log" 2>&1
    end=$(date +%s.%N)
    local rate; rate="$(grep '^step ' "$OUT/$kind.log" | tail -n 1 | sed 's/.*images\/s //')"
    echo "{\"round\": $r, \"kind\": \"$kind\", \"processes\": $procs, \"threads\": $threads, \"wall_s\": $(echo "$end - $start" | bc), \"images_per_s\": $rate}"
}
for ((r = 1; r <= ROUNDS; r++)); do
    run one-thread 1 1
    run two-processes 2 1
    run two-threads 1 2
done
