"""Independent PyTorch reference for faststyle's integration tests (fp32, CPU).

usage:
  reference.py stylize --checkpoint F --input IMG --output OUT.safetensors [--precision fp32]
                       [--style NAME|INDEX]
  reference.py train --checkpoint-init F|none --vgg F --content IMG --style IMG --steps N
                     [--lr 1e-3] [--content-weight 1e5] [--style-weight 1e10] [--tv-weight 0]
                     --out OUT.json [--save-final F]

stylize writes the raw (unclamped) network output, 1x3xHxW float32, as tensor `output`.
The network runs as the PyTorch example's (no padding to a multiple of 4), so compare
at sizes that are multiples of 4, where the output size equals the input size.

train re-creates one run of the PyTorch example's training loop on a single content
image (batch of 1, no resizing or cropping) and writes each step's losses, computed
before that step's update: {"content": [...], "style": [...], "tv": [...], "total": [...]}.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402
from torch_net import (TransformerNet, Vgg16, gram_matrix, normalize_batch,  # noqa: E402
                       transformer_from_file)


def load_image(path):
    """1x3xHxW float32 in 0..255, RGB. Equals the example's ToTensor() then mul(255):
    u8/255*255 gives back every integer 0..255 exactly in float32."""
    img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().unsqueeze(0)


def cmd_stylize(a):
    net, _ = transformer_from_file(a.checkpoint, a.style)
    net.eval()
    x = load_image(a.input)
    with torch.no_grad():
        y = net(x)
    st.save(a.output, {"output": y.contiguous()},
            {"created_by": "faststyle reference.py stylize", "input": os.path.basename(a.input)})
    print(f"stylize: {tuple(x.shape)} -> {tuple(y.shape)}, range {y.min().item():.3f}..{y.max().item():.3f}")


def tv_loss(y):
    # Total variation as anisotropic L1 with means (not sums):
    #   mean|y[:,:,:,1:] - y[:,:,:,:-1]| + mean|y[:,:,1:,:] - y[:,:,:-1,:]|
    # computed on the raw transformer output (0..255 scale), before VGG normalisation.
    dx = (y[:, :, :, 1:] - y[:, :, :, :-1]).abs().mean()
    dy = (y[:, :, 1:, :] - y[:, :, :-1, :]).abs().mean()
    return dx + dy


def cmd_train(a):
    torch.manual_seed(0)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.checkpoint_init == "none":
        transformer = TransformerNet()  # PyTorch default init after manual_seed(0)
    else:
        transformer, _ = transformer_from_file(a.checkpoint_init)
    transformer.train()
    vgg = Vgg16(a.vgg)
    optimizer = torch.optim.Adam(transformer.parameters(), a.lr)
    mse_loss = torch.nn.MSELoss()

    style = load_image(a.style)  # as is: no --style-size resizing
    with torch.no_grad():
        features_style = vgg(normalize_batch(style))
        gram_style = [gram_matrix(y) for y in features_style]
    x = load_image(a.content)  # already square; batch of 1

    hist = {"content": [], "style": [], "tv": [], "total": []}
    for _ in range(a.steps):
        optimizer.zero_grad()
        y = transformer(x)
        # tv before normalize_batch; 0 weight leaves the term out, as the example has none
        tv = a.tv_weight * tv_loss(y) if a.tv_weight != 0 else torch.zeros(())
        features_y = vgg(normalize_batch(y))
        features_x = vgg(normalize_batch(x))
        content_loss = a.content_weight * mse_loss(features_y.relu2_2, features_x.relu2_2)
        style_loss = 0.0
        for ft_y, gm_s in zip(features_y, gram_style):
            gm_y = gram_matrix(ft_y)
            style_loss += mse_loss(gm_y, gm_s[: len(x), :, :])
        style_loss *= a.style_weight
        total_loss = content_loss + style_loss
        if a.tv_weight != 0:
            total_loss = total_loss + tv
        total_loss.backward()
        optimizer.step()
        hist["content"].append(content_loss.item())
        hist["style"].append(style_loss.item())
        hist["tv"].append(tv.item())
        hist["total"].append(total_loss.item())
        print(f"step {len(hist['total'])}: content {hist['content'][-1]:.6g} style {hist['style'][-1]:.6g} "
              f"tv {hist['tv'][-1]:.6g} total {hist['total'][-1]:.6g}", flush=True)

    with open(a.out, "w") as f:
        json.dump(hist, f, indent=1)
    if a.save_final:
        st.save(a.save_final, transformer.state_dict(),
                {"format": "faststyle.transformer", "format_version": "1",
                 "style": os.path.splitext(os.path.basename(a.style))[0],
                 "iterations": str(a.steps), "content_weight": str(a.content_weight),
                 "style_weight": str(a.style_weight), "image_size": str(x.shape[-1]),
                 "created_by": "faststyle reference.py train"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stylize", help="one forward pass, raw output to safetensors")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--input", required=True)
    s.add_argument("--output", required=True)
    s.add_argument("--precision", default="fp32", choices=["fp32"])
    s.add_argument("--style", help="style of a multi-style checkpoint (its row, in the example's network)")
    t = sub.add_parser("train", help="the example's training loop on one image, losses to JSON")
    t.add_argument("--checkpoint-init", required=True, help="faststyle safetensors, or 'none'")
    t.add_argument("--vgg", required=True)
    t.add_argument("--content", required=True)
    t.add_argument("--style", required=True)
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--content-weight", type=float, default=1e5)
    t.add_argument("--style-weight", type=float, default=1e10)
    t.add_argument("--tv-weight", type=float, default=0.0)
    t.add_argument("--out", required=True, help="JSON file of per-step losses")
    t.add_argument("--save-final", help="write the trained weights here (safetensors)")
    t.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch default)")
    a = ap.parse_args()
    {"stylize": cmd_stylize, "train": cmd_train}[a.cmd](a)


if __name__ == "__main__":
    main()
