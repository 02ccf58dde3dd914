#!/usr/bin/env bash
# Unpacks the distribution's own ffmpeg (Debian 12: 5.1) into DEST, off PATH, with a wrapper
# DEST/ffmpeg that finds its libraries there, so that the video tests can run `infer` with the
# ffmpeg that users of the distribution have, without it taking over every other test's ffmpeg
# (an installed /usr/bin/ffmpeg would come first on PATH). Root only (apt); idempotent.
#
#   bash scripts/distro_ffmpeg.sh .venv/distro-ffmpeg
set -euo pipefail
dest="${1:?usage: distro_ffmpeg.sh DEST}"
if [ -x "$dest/ffmpeg" ] && "$dest/ffmpeg" -version >/dev/null 2>&1; then
    exit 0
fi
debs="$(mktemp -d)"
chmod 755 "$debs"  # apt downloads as the _apt user
trap 'rm -rf "$debs"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# The libraries it needs that are not installed, and the ffmpeg package itself.
apt-get install --download-only -y -q -o Dir::Cache::archives="$debs" ffmpeg >/dev/null
(cd "$debs" && apt-get download -q ffmpeg >/dev/null 2>&1)
rm -rf "$dest.tmp" && mkdir -p "$dest.tmp/root"
for deb in "$debs"/*.deb; do dpkg -x "$deb" "$dest.tmp/root"; done
cat > "$dest.tmp/ffmpeg" <<'WRAP'
#!/bin/sh
# The distribution's ffmpeg, unpacked beside this file by scripts/distro_ffmpeg.sh.
here="$(cd "$(dirname "$0")" && pwd)"
libs=""
for d in "$here"/root/usr/lib/*-linux-gnu "$here"/root/usr/lib/*-linux-gnu/*/; do
    [ -d "$d" ] && libs="$libs${libs:+:}$d"
done
LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/root/usr/bin/ffmpeg" "$@"
WRAP
chmod +x "$dest.tmp/ffmpeg"
"$dest.tmp/ffmpeg" -version | head -1
rm -rf "$dest" && mv "$dest.tmp" "$dest"
