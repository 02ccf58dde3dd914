"""Training throughput of PyTorch, the baseline faststyle's train is compared with.

usage:
  torch_train.py --dataset DIR --vgg F --style IMG [--mode faithful|tuned]
                       [--device cpu|cuda] [--batch-size 4] [--image-size 256]
                       [--iterations N] [--warmup K] [--workers W] [--json OUT]

faithful: the PyTorch example's neural_style.py train loop: images loaded with PIL,
  Resize(image_size) + CenterCrop + ToTensor + mul(255), DataLoader(batch_size) with no
  shuffling and no workers, fp32, two full VGG passes, .item() on the losses each step.
tuned: bf16 autocast on CUDA (fp32 on CPU; Gram matrices in fp32), channels_last,
  DataLoader with W workers, pinned memory, uint8 batches converted on the device,
  non_blocking copies, content VGG pass stopped at relu2_2, fused Adam on CUDA, cudnn
  benchmark, no per-step synchronisation.

Reports images/s over the timed iterations (after K warm-up iterations), and the
images/s of iterating the same DataLoader alone, without the model.
The example's ImageFolder needs one level of subfolders; here DIR is searched recursively.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from torch_net import TransformerNet, Vgg16, gram_matrix, normalize_batch  # noqa: E402

# torchvision's IMG_EXTENSIONS
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def find_images(root):
    files = []
    for d, _, names in os.walk(root):
        files += [os.path.join(d, n) for n in names if n.lower().endswith(EXTENSIONS)]
    return sorted(files)


def resize_shorter(img, size):
    """torchvision transforms.Resize(int) on a PIL image: shorter side to `size`, bilinear."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), Image.BILINEAR)


def center_crop(img, size):
    """torchvision transforms.CenterCrop(int) on a PIL image at least `size` on each side."""
    w, h = img.size
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


class Images(torch.utils.data.Dataset):
    def __init__(self, root, image_size, as_uint8):
        self.files = find_images(root)
        if not self.files:
            raise SystemExit(f"no images under {root}")
        self.size = image_size
        self.as_uint8 = as_uint8

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        with open(self.files[i], "rb") as f:  # ImageFolder's pil_loader
            img = Image.open(f).convert("RGB")
        img = center_crop(resize_shorter(img, self.size), self.size)
        t = torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).contiguous()
        if self.as_uint8:
            return t  # tuned: converted to float on the device
        return t.float().div(255).mul(255)  # ToTensor() then Lambda(x.mul(255))


def load_style(path, size, device):
    img = Image.open(path).convert("RGB")
    if size:
        img = img.resize((size, size), Image.LANCZOS)  # the example's utils.load_image (ANTIALIAS)
    t = torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).float()
    return t.unsqueeze(0).to(device)


def cycle(loader):
    while True:
        yield from loader


def make_loader(a, device):
    tuned = a.mode == "tuned"
    ds = Images(a.dataset, a.image_size, as_uint8=tuned)
    if not tuned:
        return torch.utils.data.DataLoader(ds, batch_size=a.batch_size)  # as the example
    return torch.utils.data.DataLoader(
        ds, batch_size=a.batch_size, shuffle=True, drop_last=len(ds) >= a.batch_size,
        num_workers=a.workers, pin_memory=device.type == "cuda",
        persistent_workers=a.workers > 0, generator=torch.Generator().manual_seed(a.seed))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_data(a, device):
    """images/s of the DataLoader alone (for tuned, including the copy to the device)."""
    it = cycle(make_loader(a, device))
    n = 0
    for i in range(a.warmup + a.iterations):
        if i == a.warmup:
            sync(device)
            t0, n = time.perf_counter(), 0
        x = next(it)
        if a.mode == "tuned":
            x = x.to(device, non_blocking=True)
        n += len(x)
    sync(device)
    return n / (time.perf_counter() - t0)


def train_faithful(a, device):
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    loader = cycle(make_loader(a, device))
    transformer = TransformerNet().to(device)
    optimizer = torch.optim.Adam(transformer.parameters(), a.lr)
    mse_loss = torch.nn.MSELoss()
    vgg = Vgg16(a.vgg).to(device)
    style = load_style(a.style, a.style_size, device).repeat(a.batch_size, 1, 1, 1)
    features_style = vgg(normalize_batch(style))
    gram_style = [gram_matrix(y) for y in features_style]

    transformer.train()
    agg_content_loss = agg_style_loss = 0.0
    n = 0
    for i in range(a.warmup + a.iterations):
        if i == a.warmup:
            sync(device)
            t0, n = time.perf_counter(), 0
        x = next(loader)
        n_batch = len(x)
        n += n_batch
        optimizer.zero_grad()
        x = x.to(device)
        y = transformer(x)
        y = normalize_batch(y)
        x = normalize_batch(x)
        features_y = vgg(y)
        features_x = vgg(x)
        content_loss = a.content_weight * mse_loss(features_y.relu2_2, features_x.relu2_2)
        style_loss = 0.0
        for ft_y, gm_s in zip(features_y, gram_style):
            gm_y = gram_matrix(ft_y)
            style_loss += mse_loss(gm_y, gm_s[:n_batch, :, :])
        style_loss *= a.style_weight
        total_loss = content_loss + style_loss
        total_loss.backward()
        optimizer.step()
        agg_content_loss += content_loss.item()  # synchronises every step, as the example
        agg_style_loss += style_loss.item()
    sync(device)
    elapsed = time.perf_counter() - t0
    return n / elapsed, {"content": content_loss.item(), "style": style_loss.item()}


def train_tuned(a, device):
    torch.manual_seed(a.seed)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    cl = torch.channels_last
    loader = cycle(make_loader(a, device))
    transformer = TransformerNet().to(device, memory_format=cl)
    optimizer = torch.optim.Adam(transformer.parameters(), a.lr, fused=cuda or None)
    vgg = Vgg16(a.vgg).to(device, memory_format=cl)
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)
    f32 = torch.autocast(device.type, enabled=False)

    def gram32(f):
        with f32:  # bf16 Gram matrices would lose the small style differences
            return gram_matrix(f.float())

    with torch.no_grad(), amp:
        style = load_style(a.style, a.style_size, device).contiguous(memory_format=cl)
        gram_style = [gram32(f) for f in vgg(normalize_batch(style))]  # batch 1, broadcast below

    transformer.train()
    agg = torch.zeros(2, device=device)
    n = 0
    for i in range(a.warmup + a.iterations):
        if i == a.warmup:
            sync(device)
            t0, n = time.perf_counter(), 0
        x = next(loader).to(device, non_blocking=True).float().contiguous(memory_format=cl)
        n += len(x)
        optimizer.zero_grad(set_to_none=True)
        with amp:
            y = transformer(x)
            features_y = vgg(normalize_batch(y.float()))  # fp32 mean/std; the conv recasts to bf16
            with torch.no_grad():
                features_x = vgg(normalize_batch(x), upto="relu2_2")
            content_loss = a.content_weight * torch.nn.functional.mse_loss(
                features_y.relu2_2.float(), features_x.relu2_2.float())
            style_loss = 0.0
            for ft_y, gm_s in zip(features_y, gram_style):
                gm_y = gram32(ft_y)
                style_loss = style_loss + torch.nn.functional.mse_loss(gm_y, gm_s.expand_as(gm_y))
            style_loss = style_loss * a.style_weight
            total_loss = content_loss + style_loss
        total_loss.backward()
        optimizer.step()
        agg += torch.stack([content_loss.detach(), style_loss.detach()])  # no sync
    sync(device)
    elapsed = time.perf_counter() - t0
    return n / elapsed, {"content": content_loss.item(), "style": style_loss.item()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--vgg", help="VGG16 safetensors (not needed with --loader-only)")
    ap.add_argument("--style", help="style image (not needed with --loader-only)")
    ap.add_argument("--loader-only", action="store_true",
                    help="time the data loading alone and print it as one JSON line")
    ap.add_argument("--mode", choices=["faithful", "tuned"], default="faithful")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--style-size", type=int, default=None)
    ap.add_argument("--iterations", type=int, default=50, help="timed iterations")
    ap.add_argument("--warmup", type=int, default=5, help="untimed iterations first")
    ap.add_argument("--workers", type=int, default=4, help="DataLoader workers (tuned only)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--content-weight", type=float, default=1e5)
    ap.add_argument("--style-weight", type=float, default=1e10)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch default)")
    ap.add_argument("--json", help="write results here")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if a.loader_only:
        a.workers = a.workers if a.mode == "tuned" else 0
        ips = bench_data(a, device)
        print(json.dumps({"bench": "loader", "impl": "pytorch-" + a.mode,
                          "image_size": a.image_size, "batch_size": a.batch_size,
                          "batches": a.iterations, "workers": a.workers, "images_per_s": ips}))
        return
    if not (a.vgg and a.style):
        ap.error("--vgg and --style are required (except with --loader-only)")

    data_ips = bench_data(a, device)
    print(f"data loading alone: {data_ips:.1f} images/s", flush=True)
    train = train_faithful if a.mode == "faithful" else train_tuned
    ips, last = train(a, device)
    print(f"{a.mode} training: {ips:.2f} images/s (batch {a.batch_size}, {a.image_size}px, "
          f"{a.iterations} timed iterations)", flush=True)
    if a.json:
        info = {"mode": a.mode, "device": str(device), "torch": torch.__version__,
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                "threads": torch.get_num_threads(), "batch_size": a.batch_size,
                "image_size": a.image_size, "iterations": a.iterations, "warmup": a.warmup,
                "workers": a.workers if a.mode == "tuned" else 0,
                "images_per_sec": ips, "data_images_per_sec": data_ips, "last_losses": last}
        with open(a.json, "w") as f:
            json.dump(info, f, indent=1)


if __name__ == "__main__":
    main()
