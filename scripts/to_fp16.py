"""Rewrites a faststyle model in half precision (float16), about half the size.

usage: .venv/bin/python scripts/to_fp16.py IN.safetensors OUT.safetensors

Every float32 tensor becomes float16; the metadata is kept, and its `sha256` (the checksum of
the tensor data, which `infer` checks on load) is computed again for the new data. `infer`,
`train --init` and the server read float16 files as they read float32 ones (widened on load).
Used for the starter model (checkpoints/README.md).
"""
import hashlib
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_net import load, save  # noqa: E402


def data_checksum(path):
    """sha256 (hex) of a safetensors file's tensor data: the bytes after its header."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        f.seek(8 + header_len)
        return hashlib.sha256(f.read()).hexdigest()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().split("\n\n")[1])
    src, dst = sys.argv[1], sys.argv[2]
    if os.path.exists(dst) and os.path.samefile(src, dst):
        sys.exit(f"to_fp16: {dst}: would overwrite the input")
    try:
        tensors, meta = load(src)
    except Exception as e:  # a missing or damaged file: one line, no traceback
        sys.exit(f"to_fp16: {src}: {e}")
    half = {k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}
    meta.pop("sha256", None)
    save(dst, half, meta)
    # The data bytes do not depend on the metadata, so the checksum of this first write is
    # the checksum of the final file.
    meta["sha256"] = data_checksum(dst)
    save(dst, half, meta)
    print(f"to_fp16: wrote {dst} ({os.path.getsize(dst) / 1e6:.1f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()
