#!/usr/bin/env bash
# Sets up faststyle on a fresh machine: a project-local Python environment with PyTorch 2.11.0
# (whose libtorch the Rust code links), the release binaries, the real VGG16 weights and the
# sample dataset. A second run only checks and rebuilds what changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$python" -m venv .venv
fi
if ! .venv/bin/python scripts/check_env.py 2>/dev/null; then
    echo "setup: installing Python packages (torch 2.11.0 is about 5 GB)"
    .venv/bin/pip install --quiet -r scripts/requirements.txt
    .venv/bin/python scripts/check_env.py
fi
# tch builds against this link (see .cargo/config.toml).
torch_dir="$(.venv/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
ln -sfn "$torch_dir" .venv/libtorch
# infer finds ffmpeg (for video) here when neither FASTSTYLE_FFMPEG nor PATH names one.
ffmpeg_exe="$(.venv/bin/python -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')"
ln -sfn "$ffmpeg_exe" .venv/bin/ffmpeg

echo "setup: building release binaries"
cargo build --release --bins

# Headless Chromium and its WebDriver for the page's browser test (tests/browser.rs, which
# says it was skipped without them). Only as root, from the OS packages.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing chromium and chromium-driver (Debian packages)"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null
    else
        echo "setup: chromium/chromedriver missing (as root: apt-get install chromium chromium-driver); the browser test will be skipped"
    fi
fi

# The distribution's own ffmpeg (Debian 12: 5.1), unpacked off PATH into .venv/distro-ffmpeg,
# for the video test that runs infer with it as the distribution's users have it
# (tests/video.rs, which says it was skipped without it). Only as root, from the OS packages.
if [ ! -x .venv/distro-ffmpeg/ffmpeg ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && command -v dpkg >/dev/null; then
        echo "setup: unpacking the distribution's ffmpeg into .venv/distro-ffmpeg (not on PATH)"
        bash scripts/distro_ffmpeg.sh .venv/distro-ffmpeg || echo "setup: could not unpack it; that test will be skipped"
    else
        echo "setup: not root: the distribution's ffmpeg is not unpacked; its video test will be skipped"
    fi
fi

# libheif, which `infer` loads at run time for HEIC/HEIF and AVIF photos (without it such a
# file is that file's error, saying this), and Debian's free ICC profiles, whose Adobe RGB
# profile the photo tests use. Only as root, from the OS packages.
if ! ldconfig -p 2>/dev/null | grep 'libheif\.so\.1' >/dev/null || [ ! -f /usr/share/color/icc/compatibleWithAdobeRGB1998.icc ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing libheif1 and icc-profiles-free (Debian packages)"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q libheif1 icc-profiles-free >/dev/null
    else
        echo "setup: libheif missing (as root: apt-get install libheif1); HEIC and AVIF photos will be refused and their test skipped"
    fi
fi

bash scripts/fetch_vgg16.sh
bash scripts/make_sample_dataset.sh
bash scripts/make_sample_clip.sh
echo "setup: done. Binaries: target/release/train, target/release/infer"
