#!/usr/bin/env bash
# Builds the release binaries and the speed benchmark, and copies the benchmark executable to
# a stable path, target/release/speed-bench (cargo names it target/release/deps/speed-HASH).
# Used by scripts/bench/cpu.sh; run it here before carrying binaries to a GPU machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
# tch finds libtorch through .cargo/config.toml (the .venv/libtorch link that setup.sh makes),
# as for every other build of the project.
if [ "${BUILD_BINS:-1}" = 1 ]; then
    cargo build --release --bins
fi
exe="$(cargo bench --bench speed --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "speed" and m.get("executable"):
        print(m["executable"])')"
if [ -z "$exe" ] || [ ! -x "$exe" ]; then
    echo "build_bench: cannot find the speed benchmark executable; building again to show the error" >&2
    cargo bench --bench speed --no-run
    exit 1
fi
cp -f "$exe" target/release/speed-bench
echo "build_bench: target/release/speed-bench (from $exe)" >&2
