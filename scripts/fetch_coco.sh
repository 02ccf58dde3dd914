#!/usr/bin/env bash
# usage: scripts/fetch_coco.sh [DIR]   (default DIR: datasets/ under the repo root)
#
# Downloads COCO 2014 train images (~13 GB, 82,783 images) and unpacks them to DIR/train2014/,
# the training set of Johnson et al. and of the PyTorch fast-neural-style example.
# Needs full internet access (images.cocodataset.org); the download resumes if interrupted.
# COCO images are under their Flickr authors' licences: see https://cocodataset.org/#termsofuse
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$ROOT/datasets}"
URL="${COCO_URL:-http://images.cocodataset.org/zips/train2014.zip}"  # override only for testing
ZIP="$DIR/train2014.zip"

if [ -d "$DIR/train2014" ] && [ -f "$DIR/train2014/.complete" ]; then
    echo "fetch_coco: $DIR/train2014 already unpacked"
    exit 0
fi

mkdir -p "$DIR"
# Download to .part and rename when complete: re-running resumes a partial download
# (--continue-at -) and never asks the server for bytes past the end of a complete one
# (a 416 that some curl versions report as an error under --fail).
if [ ! -f "$ZIP" ]; then
    curl -fL --retry 5 --continue-at - -o "$ZIP.part" "$URL"
    mv "$ZIP.part" "$ZIP"
fi
unzip -tq "$ZIP" >/dev/null   # integrity check before unpacking
unzip -q -o "$ZIP" -d "$DIR"
touch "$DIR/train2014/.complete"
echo "fetch_coco: $(ls "$DIR/train2014" | wc -l) images in $DIR/train2014 (you may delete $ZIP)"
