"""A picture of clips side by side: one row per clip, the same frames in each, labelled; and
optionally an animated WebP of the clips side by side.

usage:
  strip.py OUT.jpg LABEL=CLIP... [--frames 0,20,40,59] [--crop X,Y,W,H] [--scale 2] [--webp OUT.webp]
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import flicker  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("clips", nargs="+", help="LABEL=CLIP")
    p.add_argument("--frames", default="0,20,40,59")
    p.add_argument("--crop", help="X,Y,W,H of each frame to show")
    p.add_argument("--scale", type=int, default=1)
    p.add_argument("--webp", help="also an animated WebP, the clips side by side")
    a = p.parse_args()
    ffmpeg = flicker.find_ffmpeg()
    wanted = [int(f) for f in a.frames.split(",")]
    rows, movies, labels = [], [], []
    for item in a.clips:
        label, path = item.split("=", 1)
        frames = [f.copy() for f in flicker.frames(ffmpeg, path)]
        if a.crop:
            x, y, w, h = map(int, a.crop.split(","))
            frames = [f[y:y + h, x:x + w] for f in frames]
        movies.append(frames)
        rows.append([frames[i] for i in wanted if i < len(frames)])
        labels.append(label)
    h, w = rows[0][0].shape[:2]
    s, gap, top = a.scale, 4, 14
    sheet = Image.new("RGB", (len(wanted) * (w * s + gap) + 90, len(rows) * (h * s + gap) + top), "white")
    draw = ImageDraw.Draw(sheet)
    for c, i in enumerate(wanted):
        draw.text((90 + c * (w * s + gap), 1), f"frame {i}", fill="black")
    for r, (label, row) in enumerate(zip(labels, rows)):
        y = top + r * (h * s + gap)
        draw.text((4, y + h * s // 2 - 6), label, fill="black")
        for c, f in enumerate(row):
            img = Image.fromarray(f).resize((w * s, h * s), Image.NEAREST)
            sheet.paste(img, (90 + c * (w * s + gap), y))
    sheet.save(a.out, quality=92)
    if a.webp:
        n = min(len(m) for m in movies)
        frames = []
        for t in range(n):
            strip = np.concatenate([np.pad(m[t], ((0, 0), (0, gap), (0, 0)), constant_values=255)
                                    for m in movies], axis=1)
            frames.append(Image.fromarray(strip).resize((strip.shape[1] * s, strip.shape[0] * s), Image.NEAREST))
        frames[0].save(a.webp, save_all=True, append_images=frames[1:], duration=66, loop=0, quality=80)


if __name__ == "__main__":
    main()
