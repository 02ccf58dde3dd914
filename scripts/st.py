"""Minimal safetensors reader/writer (no dependency beyond torch).

Format: 8-byte little-endian header length N, N bytes of JSON header
({name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}),
then the raw little-endian tensor bytes; offsets are relative to the end of the header.

    from st import load, save
    tensors, meta = load("model.safetensors")
    save("out.safetensors", tensors, {"format": "faststyle.transformer"})
"""
import json
import os
import struct
import sys
import tempfile

import torch

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}

if sys.byteorder != "little":
    raise RuntimeError("st.py assumes a little-endian host")


def load(path):
    """Return (dict name -> CPU tensor, metadata dict of strings)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: header length {n} exceeds file size")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None) or {}
    body = memoryview(data)[8 + n:]
    tensors = {}
    for name, info in header.items():
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        shape = list(info["shape"])
        numel = 1
        for s in shape:
            numel *= s
        itemsize = torch.empty((), dtype=dtype).element_size()
        if end - begin != numel * itemsize or end > len(body):
            raise ValueError(f"{path}: tensor {name}: bad data_offsets {begin}..{end}")
        if numel == 0:
            t = torch.empty(shape, dtype=dtype)
        else:  # bytearray copy: the tensor owns writable memory
            t = torch.frombuffer(bytearray(body[begin:end]), dtype=dtype).reshape(shape)
        tensors[name] = t
    return tensors, dict(meta)


def save(path, tensors, metadata=None):
    """Write tensors (moved to CPU, made contiguous) atomically: temp file + rename."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        if t.dtype not in _NAMES:
            raise ValueError(f"tensor {name}: unsupported dtype {t.dtype}")
        # reinterpret as bytes (works for bf16 too, which numpy lacks)
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * (-len(hjson) % 8)  # pad so the data starts 8-byte aligned
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; use the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(hjson)))
            f.write(hjson)
            for raw in blobs:
                f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="List the tensors and metadata of a safetensors file.")
    ap.add_argument("file")
    ts, md = load(ap.parse_args().file)
    for k, v in md.items():
        print(f"meta {k} = {v}")
    for k, v in ts.items():
        print(f"{k} {v.dtype} {tuple(v.shape)}")
