"""The PyTorch baseline of `infer` on a video: the same job done the usual way, to time against.

usage:
  torch_video.py INPUT OUTPUT --checkpoint MODEL.safetensors [--device cpu|cuda]
                       [--precision fp32|fp16|bf16] [--batch N] [--crf 18] [--ffmpeg PATH] [--json OUT]

An ffmpeg decodes INPUT to raw RGB frames on a pipe; the PyTorch fast-neural-style example's
TransformerNet, with the same weights, stylizes them (N at a time); a second ffmpeg encodes the
result as H.264 (yuv420p, CRF 18, BT.709 as faststyle writes) and copies INPUT's sound. Like
the TensorFlow and PyTorch video scripts it keeps the nominal frame rate, not each frame's
timestamp. Prints frames, seconds and frames/s (whole job, process start-up included).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

t_start = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from torch_net import transformer_from_file  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def find_ffmpeg(given):
    exe = given or os.environ.get("FASTSTYLE_FFMPEG") or shutil.which("ffmpeg")
    if exe:
        return exe
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def probe(ffmpeg, path):
    """Width, height (as displayed) and frame rate, from ffmpeg's banner and one decoded frame."""
    out = subprocess.run([ffmpeg, "-hide_banner", "-i", path, "-map", "0:V:0", "-frames:v", "1",
                          "-vf", "showinfo", "-f", "null", "-"], capture_output=True, text=True).stderr
    size = re.search(r" s:(\d+)x(\d+)", out)
    rate = re.search(r"Video: .*?, ([\d.]+) fps", out)
    if not size:
        sys.exit(f"{path}: cannot read a video frame")
    return int(size.group(1)), int(size.group(2)), (rate.group(1) if rate else "30")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=DTYPES)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--crf", type=int, default=18)
    p.add_argument("--ffmpeg")
    p.add_argument("--json")
    a = p.parse_args()
    ffmpeg = find_ffmpeg(a.ffmpeg)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    net = transformer_from_file(a.checkpoint)[0].eval().to(device=dev, dtype=DTYPES[a.precision])
    w, h, rate = probe(ffmpeg, a.input)
    dec = subprocess.Popen([ffmpeg, "-v", "error", "-nostdin", "-i", a.input, "-map", "0:V:0",
                            "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], stdout=subprocess.PIPE)
    enc = subprocess.Popen([ffmpeg, "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                            "-s", f"{w}x{h}", "-r", rate, "-i", "-", "-i", a.input, "-map", "0:v", "-map", "1:a?",
                            "-c:a", "copy", "-c:v", "libx264", "-preset", "medium", "-crf", str(a.crf),
                            "-pix_fmt", "yuv420p", "-vf",
                            "scale=out_color_matrix=bt709:out_range=tv,"
                            "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv",
                            a.output], stdin=subprocess.PIPE)
    n = w * h * 3
    frames = 0
    with torch.inference_mode():
        done = False
        while not done:
            batch = []
            while len(batch) < a.batch:
                buf = dec.stdout.read(n)
                if len(buf) < n:
                    done = True
                    break
                batch.append(np.frombuffer(buf, np.uint8).reshape(h, w, 3))
            if not batch:
                break
            x = torch.from_numpy(np.stack(batch)).to(dev).permute(0, 3, 1, 2).to(DTYPES[a.precision])
            y = net(x).float().clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu()
            enc.stdin.write(y.numpy().tobytes())
            frames += len(batch)
    enc.stdin.close()
    if enc.wait() != 0 or dec.wait() != 0:
        sys.exit("ffmpeg failed")
    secs = time.perf_counter() - t_start
    rec = {"bench": "video", "impl": "pytorch", "device": a.device, "precision": a.precision, "batch": a.batch,
           "width": w, "height": h, "frames": frames, "seconds": secs, "frames_per_s": frames / secs}
    print(json.dumps(rec))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rec, f)


if __name__ == "__main__":
    main()
