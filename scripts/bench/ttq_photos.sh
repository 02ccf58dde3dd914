#!/usr/bin/env bash
# usage: scripts/bench/ttq_photos.sh OUT
#
# The photos of the time-to-quality benchmark (scripts/bench/ttq.sh): OUT/train (four photos,
# one batch of the example's 4) and OUT/held (four others that no run trains on), and the
# third style OUT/styles/ihc.png (a micrograph). Seven of them are datasets/sample's
# (scikit-image's, see datasets/README.md); two more come from scikit-learn's wheel on PyPI,
# downloaded and unzipped only (never installed), each file checked by sha256:
#   china.jpg   Flickr, danielbuechele, CC BY 2.0 (sklearn/datasets/images/README.txt)
#   flower.jpg  Flickr, vultilion, CC BY 2.0 (the same README; its attribution line repeats
#               danielbuechele, its link names vultilion)
# ihc.png (scikit-image): immunohistochemistry micrograph of colonic glands, Center for
# Microscopy And Molecular Imaging, "no known copyright restrictions".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:?usage: ttq_photos.sh OUT}"
SKLEARN=1.6.1
TRAIN="astronaut.png flower.jpg hubble_deep_field.jpg rocket.jpg"
HELD="chelsea.png china.jpg coffee.png retina.jpg"
SKLEARN_IMAGES="
china.jpg 8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29
flower.jpg a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638
"
mkdir -p "$OUT/train" "$OUT/held" "$OUT/styles" "$OUT/extra"

have_extra() {
    local name sum
    while read -r name sum; do
        [ -n "$name" ] || continue
        [ "$(sha256sum "$OUT/extra/$name" 2>/dev/null | cut -d' ' -f1)" = "$sum" ] || return 1
    done <<< "$SKLEARN_IMAGES"
}
if ! have_extra; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "$root/.venv/bin/pip" download --quiet --no-deps --only-binary :all: --implementation cp \
        --python-version 3.11 --abi cp311 --platform manylinux2014_x86_64 \
        "scikit-learn==$SKLEARN" -d "$tmp"
    "$root/.venv/bin/python" - "$tmp"/scikit_learn-*.whl "$OUT/extra" <<'PYEOF'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in ("china.jpg", "flower.jpg"):
        with open(os.path.join(sys.argv[2], name), "wb") as f:
            f.write(z.read("sklearn/datasets/images/" + name))
PYEOF
    have_extra || { echo "ttq_photos: the scikit-learn $SKLEARN images are not the expected files" >&2; exit 1; }
fi

place() {  # place NAME FOLDER: a link to the photo, wherever it comes from
    local src="$root/datasets/sample/$1"
    [ -f "$src" ] || src="$(cd "$OUT/extra" && pwd)/$1"
    [ -f "$src" ] || { echo "ttq_photos: $1 not found (run scripts/setup.sh)" >&2; exit 1; }
    ln -sfn "$src" "$2/$1"
}
for p in $TRAIN; do place "$p" "$OUT/train"; done
for p in $HELD; do place "$p" "$OUT/held"; done
place ihc.png "$OUT/styles"
echo "ttq_photos: $OUT/train ($TRAIN), $OUT/held ($HELD), $OUT/styles/ihc.png" >&2
