"""Convert a PyTorch fast-neural-style model (.pth state dict) to a faststyle checkpoint.

usage: convert_pth.py IN.pth OUT.safetensors [--style NAME]

IN.pth is what the PyTorch example saves (torch.save(transformer.state_dict(), ...)),
e.g. its pretrained candy.pth / mosaic.pth / rain_princess.pth / udnie.pth.
"""
import argparse
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_net import TransformerNet, save  # noqa: E402

# Models saved by PyTorch < 0.4 carry instance-norm running statistics that current
# InstanceNorm2d (track_running_stats=False) does not have; the example deletes them too.
DEPRECATED = re.compile(r"in\d+\.running_(mean|var)$")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="state dict saved by the PyTorch example (.pth/.model)")
    ap.add_argument("output", help="output .safetensors")
    ap.add_argument("--style", help="style name for the metadata (default: input file stem)")
    a = ap.parse_args()

    # weights_only=True: refuses anything but tensors and plain containers (no code execution)
    sd = torch.load(a.input, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        sys.exit(f"{a.input}: expected a state dict, got {type(sd).__name__}")
    sd = {k: v for k, v in sd.items() if not DEPRECATED.search(k)}

    expected = TransformerNet().state_dict()
    errors = []
    for k, v in expected.items():
        if k not in sd:
            errors.append(f"missing tensor {k}")
        elif not torch.is_tensor(sd[k]) or tuple(sd[k].shape) != tuple(v.shape):
            shape = tuple(sd[k].shape) if torch.is_tensor(sd[k]) else type(sd[k]).__name__
            errors.append(f"{k} has shape {shape}, expected {tuple(v.shape)}")
    errors += [f"unexpected tensor {k}" for k in sd if k not in expected]
    if errors:
        sys.exit(f"{a.input}: not a TransformerNet state dict:\n  " + "\n  ".join(errors))

    style = a.style or os.path.splitext(os.path.basename(a.input))[0]
    tensors = {k: sd[k].detach().to(torch.float32).contiguous() for k in expected}
    save(a.output, tensors, {"format": "faststyle.transformer", "format_version": "1",
         "style": style, "created_by": "faststyle convert_pth.py"})
    print(f"wrote {a.output}: {len(tensors)} tensors, style {style!r}")


if __name__ == "__main__":
    main()
