"""Flicker of a stylized video: how much its frames change from one to the next, relative to
how much the input's frames do.

usage:
  flicker.py INPUT STYLIZED [--json OUT]      the ratio for any clip and its stylized version
  flicker.py --make-clip PHOTO OUT.mp4 [--frames 60] [--size 256] [--noise 6]
                                              a still scene with fresh noise in every frame

flicker = mean |S[t] - S[t-1]| / mean |I[t] - I[t-1]| over consecutive frames t, on RGB
values 0..255 (S the stylized frames, I the input's). On a still scene with noise the input
changes only by the noise, so a ratio of 1 means the network passes the noise on unchanged and
above 1 that it amplifies it into flicker. Frames are decoded one at a time by ffmpeg
(FASTSTYLE_FFMPEG, else ffmpeg on PATH, else imageio-ffmpeg's), so clips of any length fit.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np


def find_ffmpeg():
    exe = os.environ.get("FASTSTYLE_FFMPEG") or shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except ImportError:
        sys.exit("no ffmpeg: set FASTSTYLE_FFMPEG, put ffmpeg on PATH or pip install imageio-ffmpeg")


def size_of(ffmpeg, path):
    """Displayed width and height of the first video stream (ffmpeg applies the rotation)."""
    out = subprocess.run([ffmpeg, "-hide_banner", "-v", "info", "-i", path, "-map", "0:V:0", "-frames:v", "1",
                          "-vf", "showinfo", "-f", "null", "-"], capture_output=True)
    for line in out.stderr.decode(errors="replace").splitlines():
        if " s:" in line:
            w, h = line.split(" s:")[1].split()[0].split("x")
            return int(w), int(h)
    sys.exit(f"{path}: no video frame could be decoded")


def frames(ffmpeg, path):
    """Yields each decoded frame of a file as an H×W×3 float32 array."""
    w, h = size_of(ffmpeg, path)
    proc = subprocess.Popen([ffmpeg, "-v", "error", "-i", path, "-map", "0:V:0", "-fps_mode", "passthrough",
                             "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], stdout=subprocess.PIPE)
    n = w * h * 3
    try:
        while True:
            buf = proc.stdout.read(n)
            if len(buf) < n:
                break
            yield np.frombuffer(buf, np.uint8).reshape(h, w, 3).astype(np.float32)
    finally:
        proc.stdout.close()
        proc.wait()


def mean_change(ffmpeg, path):
    """Mean absolute change between consecutive frames, and the number of frames."""
    prev, total, count, n = None, 0.0, 0, 0
    for f in frames(ffmpeg, path):
        n += 1
        if prev is not None:
            total += float(np.abs(f - prev).mean())
            count += 1
        prev = f
    if count == 0:
        sys.exit(f"{path}: fewer than two frames")
    return total / count, n


def make_clip(ffmpeg, photo, out, frames_n, size, noise):
    """A still photo, scaled to `size` px on its longer side, with temporal noise (fresh in
    every frame, `noise` = ffmpeg's noise strength), 30 frames/s, H.264 at high quality."""
    vf = (f"scale='if(gte(iw,ih),{size},-2)':'if(gte(iw,ih),-2,{size})',"
          f"setsar=1,noise=alls={noise}:allf=t,format=yuv420p")
    subprocess.run([ffmpeg, "-v", "error", "-y", "-loop", "1", "-framerate", "30", "-i", photo,
                    "-frames:v", str(frames_n), "-vf", vf, "-c:v", "libx264", "-crf", "10", out], check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?")
    p.add_argument("stylized", nargs="?")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--make-clip", nargs=2, metavar=("PHOTO", "OUT"))
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--noise", type=int, default=6)
    a = p.parse_args()
    ffmpeg = find_ffmpeg()
    if a.make_clip:
        make_clip(ffmpeg, a.make_clip[0], a.make_clip[1], a.frames, a.size, a.noise)
        return
    if not (a.input and a.stylized):
        p.error("give INPUT and STYLIZED (or --make-clip PHOTO OUT)")
    change_in, n_in = mean_change(ffmpeg, a.input)
    change_out, n_out = mean_change(ffmpeg, a.stylized)
    if n_in != n_out:
        print(f"warning: {n_in} input frames, {n_out} stylized frames", file=sys.stderr)
    rec = {"input": a.input, "stylized": a.stylized, "frames": n_out,
           "input_change": change_in, "stylized_change": change_out, "flicker": change_out / change_in}
    print(f"frames {n_out}  input change {change_in:.3f}  stylized change {change_out:.3f}  "
          f"flicker ratio {rec['flicker']:.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rec, f)


if __name__ == "__main__":
    main()
