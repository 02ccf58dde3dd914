"""Exits non-zero unless the project's Python environment has what set-up installs."""
import importlib
import sys

REQUIRED = [
    "numpy", "safetensors", "tensorboard", "PIL", "onnx", "onnxruntime", "imageio_ffmpeg", "cv2",
    "matplotlib", "pillow_heif",
]

import torch  # noqa: E402

if torch.__version__.split("+")[0] != "2.11.0":
    sys.exit(f"torch {torch.__version__} installed, 2.11.0 needed")
for name in REQUIRED:
    importlib.import_module(name)
# A CUDA build of torch: the headers of the NCCL backend of distributed training (build.rs).
if torch.version.cuda and sys.platform == "linux":
    from importlib.metadata import PackageNotFoundError, version

    for package in ["nvidia-cuda-crt", "nvidia-cuda-cccl"]:
        try:
            version(package)
        except PackageNotFoundError:
            sys.exit(f"{package} is not installed")
