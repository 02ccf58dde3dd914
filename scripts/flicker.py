"""How steady a stylized video is: its warping error (Lai et al. 2018) along the input's motion,
and the flicker ratio, for any clip and its stylized versions.

usage:
  flicker.py INPUT STYLIZED... [--motion SPEC | --opencv] [--json OUT]
  flicker.py --make-clip PHOTO OUT.mp4 [--motion-kind still|pan|zoom|rotate|object|shake]
             [--photo2 PHOTO] [--frames 60] [--size 256] [--noise 3] [--seed 0]

Warping error: warp stylized frame t to t+1 along the input's optical flow, then the mean
squared difference to stylized frame t+1 (RGB in 0..1, squared norm over the channels), over
the pixels visible in both frames (a forward-backward flow check marks occlusions and the
borders that motion uncovers), averaged over the pairs; see warping.py. It is reported for the
input too, to read the stylized figures against. Lower is steadier; an output that follows the
motion exactly scores 0 (the input scores its noise and its resampling).

The flow: the exact one when the clip was made by --make-clip (it writes OUT.motion.json beside
the clip, found automatically, or give --motion), else OpenCV's DIS estimator (pip package
opencv-python-headless; --opencv forces it).

Flicker ratio (the older, second figure): mean |S[t] - S[t-1]| / mean |I[t] - I[t-1]| over
consecutive frames, RGB 0..255; it does not follow the motion, so real motion counts in it.

--make-clip renders a clip from a photo with a known motion, 30 frames/s, with Gaussian sensor
noise of --noise levels fresh in every frame, H.264 at CRF 12 (.mkv: lossless PNG frames):
still, pan (1.7 px a frame), zoom (1 % a frame), rotate (0.5 degrees a frame), object (a disc
of --photo2 crossing at 2.5 px a frame over the still photo), shake (a hand's smooth tremor).

Frames are decoded by ffmpeg (FASTSTYLE_FFMPEG, else ffmpeg on PATH, else imageio-ffmpeg's) one
at a time, all clips in step, so clips of any length fit.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warping  # noqa: E402


def find_ffmpeg():
    exe = os.environ.get("FASTSTYLE_FFMPEG") or shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except ImportError:
        sys.exit("no ffmpeg: set FASTSTYLE_FFMPEG, put ffmpeg on PATH or pip install imageio-ffmpeg")


def version(ffmpeg):
    """(major, minor) of an ffmpeg; a development build without a number counts as new."""
    out = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout.split()
    v = out[2] if len(out) > 2 and out[0] == "ffmpeg" else ""
    digits = v.lstrip("n").split("-")[0].split(".")
    try:
        return int(digits[0]), int(digits[1]) if len(digits) > 1 else 0
    except ValueError:
        return (99, 0)


def passthrough(ffmpeg):
    """Every decoded frame once: -fps_mode (ffmpeg 5.1 on), -vsync before (gone in 8)."""
    return ["-fps_mode", "passthrough"] if version(ffmpeg) >= (5, 1) else ["-vsync", "passthrough"]


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
    """Yields each decoded frame of a file as an H x W x 3 uint8 array."""
    w, h = size_of(ffmpeg, path)
    proc = subprocess.Popen([ffmpeg, "-v", "error", "-i", path, "-map", "0:V:0", *passthrough(ffmpeg),
                             "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], stdout=subprocess.PIPE)
    n = w * h * 3
    try:
        while True:
            buf = proc.stdout.read(n)
            if len(buf) < n:
                break
            yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
    finally:
        proc.stdout.close()
        proc.wait()


def load_photo(path):
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


def write_clip(ffmpeg, out, rendered, size):
    """Encodes H x W x 3 uint8 frames: .mkv losslessly (PNG frames), else H.264 at CRF 12."""
    codec = (["-c:v", "png", "-pix_fmt", "rgb24"] if out.lower().endswith(".mkv")
             else ["-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p"])
    proc = subprocess.Popen([ffmpeg, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                             "-s", f"{size}x{size}", "-r", "30", "-i", "-", *codec, out], stdin=subprocess.PIPE)
    for frame in rendered:
        proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        sys.exit(f"{out}: ffmpeg could not write the clip")


def make_clip(ffmpeg, a):
    photo, out = a.make_clip
    photos = [load_photo(photo)]
    if a.motion_kind == "object":
        photos.append(load_photo(a.photo2 or photo))
    sizes = [(p.shape[1], p.shape[0]) for p in photos]
    if min(min(s) for s in sizes[:1]) < a.size:
        sys.exit(f"{photo}: smaller than --size {a.size}")
    motion = warping.make_motion(a.motion_kind, a.size, a.frames, sizes, a.seed)
    rng = np.random.default_rng(a.seed + 1)

    def rendered():
        for t in range(a.frames):
            f = motion.render(photos, t) + rng.normal(0, a.noise, (a.size, a.size, 3))
            yield np.clip(np.rint(f), 0, 255).astype(np.uint8)

    write_clip(ffmpeg, out, rendered(), a.size)
    with open(spec_path(out), "w") as f:
        json.dump(motion.spec(), f)


def spec_path(clip):
    return clip + ".motion.json"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?")
    p.add_argument("stylized", nargs="*")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--motion", help="the input's motion (default: INPUT.motion.json if it exists)")
    p.add_argument("--opencv", action="store_true", help="estimate the flow with OpenCV even if the motion is known")
    p.add_argument("--make-clip", nargs=2, metavar=("PHOTO", "OUT"))
    p.add_argument("--motion-kind", default="still", choices=["still", "pan", "zoom", "rotate", "object", "shake"])
    p.add_argument("--photo2", help="the moving object's photo (--motion-kind object)")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--noise", type=float, default=3.0, help="sensor noise, standard deviation in levels of 255")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    ffmpeg = find_ffmpeg()
    if a.make_clip:
        make_clip(ffmpeg, a)
        return
    if not (a.input and a.stylized):
        p.error("give INPUT and STYLIZED... (or --make-clip PHOTO OUT)")
    motion_file = a.motion or (spec_path(a.input) if os.path.exists(spec_path(a.input)) else None)
    if motion_file and not a.opencv:
        motion = warping.Motion.load(motion_file)
        pair_flows, flow = motion.pair_flows, f"exact ({motion_file})"
    else:
        pair_flows, flow = warping.opencv_flows(), "OpenCV DIS"
    size = size_of(ffmpeg, a.input)
    for s in a.stylized:
        if size_of(ffmpeg, s) != size:
            sys.exit(f"{s}: {size_of(ffmpeg, s)} frames, the input's are {size}")
    clips = [frames(ffmpeg, path) for path in [a.input, *a.stylized]]
    r = warping.measure(clips, pair_flows)
    rec = {"input": a.input, "flow": flow, "frames": r["frames"], "visible": r["visible"],
           "input_warping_error": r["warping_error"][0], "input_change": r["change"][0], "stylized": []}
    print(f"{a.input}: {r['frames']} frames, flow {flow}, {100 * r['visible']:.1f}% of pixels visible in both frames")
    print(f"  {'clip':<40} {'warping error':>14} {'flicker ratio':>14}")
    print(f"  {'(input)':<40} {r['warping_error'][0]:>14.6f} {1.0:>14.3f}")
    for i, s in enumerate(a.stylized, 1):
        ratio = r["change"][i] / r["change"][0] if r["change"][0] > 0 else float("inf")
        rec["stylized"].append({"clip": s, "warping_error": r["warping_error"][i],
                                "change": r["change"][i], "flicker": ratio})
        print(f"  {s:<40} {r['warping_error'][i]:>14.6f} {ratio:>14.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rec, f, indent=1)


if __name__ == "__main__":
    main()
