"""Style and content losses of a style model on a folder of photos, with the training recipe's
definitions (VGG16 relu1_2…relu4_3 Gram matrices, style weight 1e10, content weight 1e5 on
relu2_2): the quality side of a trade such as flicker against style.

usage:
  style_loss.py MODEL.safetensors --style STYLE.jpg --photos DIR [--size 128] [--style-size 256]
                [--vgg checkpoints/vgg16.safetensors] [--json OUT]

Each photo is resized (shorter side --size, centre crop, as training does), stylized by the
model and scored; the means over the photos are printed.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_net import Vgg16, gram_matrix, normalize_batch, transformer_from_file  # noqa: E402


def load(path, size=None, crop=True):
    img = Image.open(path).convert("RGB")
    if size:
        w, h = img.size
        s = size / min(w, h)
        img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.LANCZOS)
        if crop:
            w, h = img.size
            left, top = (w - size) // 2, (h - size) // 2
            img = img.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().unsqueeze(0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--style", required=True)
    p.add_argument("--photos", required=True)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--style-size", type=int, default=None)
    p.add_argument("--vgg", default="checkpoints/vgg16.safetensors")
    p.add_argument("--style-weight", type=float, default=1e10)
    p.add_argument("--content-weight", type=float, default=1e5)
    p.add_argument("--json")
    a = p.parse_args()
    torch.set_grad_enabled(False)
    net = transformer_from_file(a.model)[0].eval()
    vgg = Vgg16(a.vgg).eval()
    style = load(a.style, a.style_size, crop=False)
    grams = [gram_matrix(f) for f in vgg(normalize_batch(style))]
    photos = sorted(os.path.join(a.photos, f) for f in os.listdir(a.photos)
                    if f.lower().endswith((".jpg", ".jpeg", ".png")))
    styles, contents = [], []
    for path in photos:
        x = load(path, a.size)
        y = net(x)
        fy = vgg(normalize_batch(y))
        fx = vgg(normalize_batch(x), upto="relu2_2")
        styles.append(a.style_weight * sum(float(((gram_matrix(f) - g) ** 2).mean()) for f, g in zip(fy, grams)))
        contents.append(a.content_weight * float(((fy.relu2_2 - fx.relu2_2) ** 2).mean()))
    rec = {"model": a.model, "photos": len(photos), "size": a.size,
           "style_loss": float(np.mean(styles)), "content_loss": float(np.mean(contents))}
    print(f"{a.model}: style loss {rec['style_loss']:.4g}  content loss {rec['content_loss']:.4g}  "
          f"({len(photos)} photos at {a.size} px)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rec, f)


if __name__ == "__main__":
    main()
