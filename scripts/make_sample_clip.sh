#!/usr/bin/env bash
# usage: scripts/make_sample_clip.sh [OUT]   (default OUT: datasets/clips/pan.mp4 under the repo root)
#
# A 2-second clip for the README's video commands: a slow pan and zoom over the sample photo
# chelsea.png (24 fps, 320×212, H.264), made by the ffmpeg that the set-up links into .venv.
# Deterministic for one ffmpeg build; rebuilt only when missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/datasets/clips/pan.mp4}"
FFMPEG="${FASTSTYLE_FFMPEG:-$ROOT/.venv/bin/ffmpeg}"
PHOTO="$ROOT/datasets/sample/chelsea.png"

if [ -s "$OUT" ]; then
    echo "make_sample_clip: $OUT exists, nothing to do"
    exit 0
fi
[ -f "$PHOTO" ] || { echo "make_sample_clip: $PHOTO missing (run scripts/make_sample_dataset.sh)" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
tmp="$OUT.tmp-$$.mp4"
trap 'rm -f "$tmp"' EXIT
# zoompan: 48 frames, zoom from 1 to about 1.1 while the window drifts right.
"$FFMPEG" -loglevel error -y -loop 1 -i "$PHOTO" \
    -vf "zoompan=z='1+0.002*on':x='(iw-iw/zoom)*on/96':y='(ih-ih/zoom)/2':d=48:s=320x212:fps=24" \
    -frames:v 48 -c:v libx264 -pix_fmt yuv420p -movflags +faststart "$tmp"
mv "$tmp" "$OUT"
echo "make_sample_clip: wrote $OUT"
