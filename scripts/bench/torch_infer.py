"""Inference speed of PyTorch eager TransformerNet, the baseline faststyle's infer is compared with.

usage:
  torch_infer.py [--checkpoint F] [--sizes 256,512,1024,2048] [--device cpu|cuda]
                       [--precisions fp32,fp16,bf16] [--repeat N] [--warmup K] [--json OUT]
  torch_infer.py [--checkpoint F] [--device cpu|cuda] --whole-job IMG OUT

Times one forward pass on a 1x3xSxS input per (size, precision) and prints the median.
--whole-job does the whole job once, as the example's `eval` does: load the model,
decode IMG, one fp32 forward pass, clamp, encode OUT (time the process from outside,
e.g. /usr/bin/time -v).
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from torch_net import TransformerNet, transformer_from_file  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def load_model(path):
    if path in (None, "none"):
        torch.manual_seed(0)
        return TransformerNet()  # random weights: same speed
    return transformer_from_file(path)[0]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def whole_job(a, device):
    from PIL import Image
    net = load_model(a.checkpoint).to(device).eval()
    img = Image.open(a.whole_job[0]).convert("RGB")
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().unsqueeze(0).to(device)
    with torch.no_grad():
        y = net(x)
    # as the example's save_image: clamp, then truncate to uint8
    out = y[0].clamp(0, 255).cpu().numpy().transpose(1, 2, 0).astype("uint8")
    Image.fromarray(out).save(a.whole_job[1])


def bench(a, device):
    net0 = load_model(a.checkpoint).eval()
    results = []
    for prec in a.precisions.split(","):
        dtype = DTYPES[prec]
        net = TransformerNet().eval()
        net.load_state_dict(net0.state_dict())
        net = net.to(device=device, dtype=dtype)  # .half() / .bfloat16() for the low precisions
        for size in [int(s) for s in a.sizes.split(",")]:
            x = (torch.rand(1, 3, size, size) * 255).to(device=device, dtype=dtype)
            times = []
            try:
                with torch.inference_mode():
                    for _ in range(a.warmup):
                        net(x)
                    sync(device)
                    for _ in range(a.repeat):
                        t0 = time.perf_counter()
                        net(x)
                        sync(device)
                        times.append((time.perf_counter() - t0) * 1e3)
            except RuntimeError as e:  # e.g. out of memory, or a dtype the CPU lacks
                print(f"size {size} {prec}: failed: {str(e).splitlines()[0]}", flush=True)
                results.append({"size": size, "precision": prec, "error": str(e).splitlines()[0]})
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            med = statistics.median(times)
            print(f"size {size} {prec}: median {med:.2f} ms (min {min(times):.2f}, n={len(times)})", flush=True)
            results.append({"size": size, "precision": prec, "median_ms": med, "min_ms": min(times),
                            "times_ms": times})
        del net
    if a.json:
        info = {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
                "cudnn_benchmark": torch.backends.cudnn.benchmark,
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                "checkpoint": a.checkpoint, "repeat": a.repeat, "warmup": a.warmup, "results": results}
        with open(a.json, "w") as f:
            json.dump(info, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--checkpoint", default="none", help="faststyle safetensors (default: random weights)")
    ap.add_argument("--sizes", default="256,512,1024,2048", help="square input sizes, comma-separated")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--precisions", default="fp32", help="comma-separated from fp32,fp16,bf16")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--cudnn-benchmark", action="store_true", help="set torch.backends.cudnn.benchmark")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch default)")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--whole-job", nargs=2, metavar=("IMG", "OUT"), help="stylize one image and exit")
    a = ap.parse_args()
    if any(p not in DTYPES for p in a.precisions.split(",")):
        ap.error(f"--precisions: choose from {','.join(DTYPES)}")
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cudnn.benchmark = a.cudnn_benchmark
    device = torch.device(a.device)
    if a.whole_job:
        whole_job(a, device)
    else:
        bench(a, device)


if __name__ == "__main__":
    main()
