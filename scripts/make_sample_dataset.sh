#!/usr/bin/env bash
# usage: scripts/make_sample_dataset.sh [OUT]   (default OUT: datasets/sample under the repo root)
#
# Builds a small folder of real colour photographs for smoke tests and demos, taken
# from scikit-image's wheel on PyPI (downloaded and unzipped only, never installed).
# Provenance and licences: datasets/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/datasets/sample}"
PIP="$ROOT/.venv/bin/pip"
VERSION=0.25.2

# file name and sha256 of each photograph in skimage/data/ of scikit-image 0.25.2
IMAGES="
astronaut.png 88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5
chelsea.png 596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb
coffee.png cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7
rocket.jpg c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c
hubble_deep_field.jpg 3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4
retina.jpg 38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6
ihc.png f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef
"

complete() {  # true when every image is in $1 with the right content
    local name sum
    while read -r name sum; do
        [ -n "$name" ] || continue
        [ -f "$1/$name" ] || return 1
        [ "$(sha256sum "$1/$name" | cut -d' ' -f1)" = "$sum" ] || return 1
    done <<< "$IMAGES"
}

if complete "$OUT"; then
    echo "make_sample_dataset: $OUT is complete, nothing to do"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Pin one wheel (any platform's wheel carries the same data files); cp311 manylinux exists.
"$PIP" download --quiet --no-deps --only-binary :all: --implementation cp --python-version 3.11 \
    --abi cp311 --platform manylinux2014_x86_64 "scikit-image==$VERSION" -d "$TMP"
WHEEL="$(ls "$TMP"/scikit_image-*.whl | head -n 1)"
# extract with the venv's Python: no dependency on an unzip binary
"$ROOT/.venv/bin/python" - "$WHEEL" "$TMP" <<'PYEOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if n.startswith("skimage/data/"):
            z.extract(n, sys.argv[2])
PYEOF
if ! complete "$TMP/skimage/data"; then
    echo "make_sample_dataset: ERROR: images in $WHEEL missing or not the expected files" >&2
    exit 1
fi

mkdir -p "$OUT"
while read -r name sum; do
    [ -n "$name" ] || continue
    cp "$TMP/skimage/data/$name" "$OUT/$name"
done <<< "$IMAGES"
echo "make_sample_dataset: wrote $(ls "$OUT" | wc -l) photos to $OUT"
