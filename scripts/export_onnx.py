"""Export a faststyle style model to ONNX, for ONNX Runtime, phones, browsers and cloud runtimes.

usage: export_onnx.py MODEL.safetensors MODEL.onnx [--style NAME|INDEX|NAME:W,NAME:W...] [--opset N]

The graph takes `image`, float32 N x 3 x H x W RGB in 0...255 (any H and W), and gives
`stylized`, the same shape, clamped to 0...255. Inside it pads the right and bottom edges by
replication up to a multiple of 4 (at least 8) and crops back, exactly as `infer` does, so any
size works. A model with several styles (instance-norm weight/bias [N, C], metadata `styles`)
has the chosen style, or blend with weights normalised to sum 1, baked in.

The graph is written with onnx.helper, layer by layer as scripts/torch_net.py lays the network
out, rather than traced: every operator is one ONNX has had since opset 13 (Pad edge/reflect,
Conv, InstanceNormalization, Relu, Resize nearest), and nothing depends on an exporter.
"""
import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_net import load  # noqa: E402

# (name, kernel, stride, upsample) of each convolution, and the norm after it, in order.
DOWN = [("conv1", 9, 1, "in1"), ("conv2", 3, 2, "in2"), ("conv3", 3, 2, "in3")]
UP = [("deconv1", 3, 1, "in4"), ("deconv2", 3, 1, "in5")]
RESIDUALS = [f"res{i}" for i in range(1, 6)]
EPS = 1e-5  # PyTorch's InstanceNorm2d


def parse_blend(spec, names):
    """Row weights (summing to 1) for NAME, INDEX or NAME:W,NAME:W over style `names`."""
    def row(key):
        if key in names:
            return names.index(key)
        if key.isdigit() and int(key) < len(names):
            return int(key)
        raise ValueError(f"unknown style `{key}` (the model has {', '.join(names)})")

    weights = np.zeros(len(names), dtype=np.float64)
    parts = spec.split(",")
    if len(parts) == 1 and ":" not in spec:
        weights[row(spec.strip())] = 1.0
        return weights
    for part in parts:
        key, sep, w = part.rpartition(":")
        if not sep:
            raise ValueError(f"blend part `{part}` is not NAME:WEIGHT")
        try:
            value = float(w)
        except ValueError:
            raise ValueError(f"blend weight `{w}` is not a number") from None
        if not value >= 0 or not np.isfinite(value):
            raise ValueError(f"blend weight `{w}` must be a finite number >= 0")
        weights[row(key.strip())] += value
    if weights.sum() <= 0:
        raise ValueError("blend weights sum to 0")
    return weights / weights.sum()


def load_weights(path, style):
    """Float32 numpy weights by name, each instance norm reduced to one [C] row."""
    tensors, meta = load(path)
    if meta.get("format", "faststyle.transformer") != "faststyle.transformer":
        raise ValueError(f"{path}: not a style model (format `{meta['format']}`)")
    arrays = {k: v.float().numpy() for k, v in tensors.items()}
    norms = sorted({k.rsplit(".", 1)[0] for k in arrays if k.split(".")[-2].startswith("in")})
    stacked = arrays.get("in1.weight") is not None and arrays["in1.weight"].ndim == 2
    if stacked:
        names = json.loads(meta["styles"]) if "styles" in meta else [
            str(i) for i in range(arrays["in1.weight"].shape[0])]
        weights = parse_blend(style if style is not None else names[0], names)
        if style is None and len(names) > 1:
            print(f"export_onnx: the model has styles {', '.join(names)}; exporting `{names[0]}` "
                  "(choose with --style)", file=sys.stderr)
        for n in norms:
            for p in ("weight", "bias"):
                rows = arrays[f"{n}.{p}"]
                if rows.ndim != 2 or rows.shape[0] != len(names):
                    raise ValueError(f"{path}: {n}.{p} has shape {rows.shape}, expected "
                                     f"[{len(names)}, C]")
                arrays[f"{n}.{p}"] = (weights[:, None] * rows).sum(0).astype(np.float32)
    elif style is not None:
        own = meta.get("style")
        if style not in ("0", own):
            raise ValueError(f"{path} has one style ({own or 'unnamed'}); --style {style} "
                             "does not name it")
    return arrays


class Graph:
    """Collects nodes and initialisers; each method adds one layer and returns its output."""

    def __init__(self, weights):
        self.w = weights
        self.nodes, self.inits, self.count = [], [], 0

    def fresh(self, stem):
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def param(self, name):
        if name not in self.w:
            raise ValueError(f"missing tensor {name}")
        return self.const(name, self.w[name].astype(np.float32))

    def op(self, kind, inputs, stem, **attrs):
        out = self.fresh(stem)
        self.nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x, name, kernel, stride, upsample=False):
        if upsample:  # nearest x2: out[i] = in[floor(i / 2)], as F.interpolate(mode="nearest")
            x = self.op("Resize", [x, "", "upsample_scales"], f"{name}_up", mode="nearest",
                        coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        p = kernel // 2
        pads = self.const(f"{name}_pads", np.array([0, 0, p, p, 0, 0, p, p], dtype=np.int64))
        x = self.op("Pad", [x, pads], f"{name}_pad", mode="reflect")
        w, b = self.param(f"{name}.conv2d.weight"), self.param(f"{name}.conv2d.bias")
        return self.op("Conv", [x, w, b], name, kernel_shape=[kernel, kernel], strides=[stride, stride])

    def norm(self, x, name):
        scale, bias = self.param(f"{name}.weight"), self.param(f"{name}.bias")
        return self.op("InstanceNormalization", [x, scale, bias], name, epsilon=EPS)

    def relu(self, x):
        return self.op("Relu", [x], "relu")


def build(weights, opset):
    g = Graph(weights)
    g.const("upsample_scales", np.array([1, 1, 2, 2], dtype=np.float32))
    # Pad right/bottom by replication to max(8, ceil4(side)), as infer's TransformerNet does.
    shape = g.op("Shape", ["image"], "shape")
    hw = g.op("Slice", [shape, g.const("i2", np.array([2], np.int64)),
                        g.const("i4", np.array([4], np.int64))], "hw")
    three, four = g.const("three", np.array(3, np.int64)), g.const("four", np.array(4, np.int64))
    aligned = g.op("Mul", [g.op("Div", [g.op("Add", [hw, three], "a"), four], "a"), four], "a")
    aligned = g.op("Max", [aligned, g.const("eight", np.array(8, np.int64))], "aligned")
    extra = g.op("Sub", [aligned, hw], "extra")
    pads = g.op("Concat", [g.const("zeros6", np.zeros(6, np.int64)), extra], "pads", axis=0)
    y = g.op("Pad", ["image", pads], "align", mode="edge")

    for name, k, s, norm in DOWN:
        y = g.relu(g.norm(g.conv(y, name, k, s), norm))
    for r in RESIDUALS:
        z = g.relu(g.norm(g.conv(y, f"{r}.conv1", 3, 1), f"{r}.in1"))
        y = g.op("Add", [g.norm(g.conv(z, f"{r}.conv2", 3, 1), f"{r}.in2"), y], f"{r}_sum")
    for name, k, s, norm in UP:
        y = g.relu(g.norm(g.conv(y, name, k, s, upsample=True), norm))
    y = g.conv(y, "deconv3", 9, 1)

    crop = g.op("Slice", [y, g.const("zeros2", np.zeros(2, np.int64)), hw,
                          g.const("axes23", np.array([2, 3], np.int64))], "crop")
    g.nodes.append(helper.make_node("Clip", [crop, g.const("lo", np.array(0, np.float32)),
                                             g.const("hi", np.array(255, np.float32))],
                                    ["stylized"], name="clamp"))
    dims = ["batch", 3, "height", "width"]
    graph = helper.make_graph(
        g.nodes, "faststyle",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("stylized", TensorProto.FLOAT, dims)], g.inits)
    opsets = [helper.make_opsetid("", opset)]
    # The oldest IR version that holds this opset: newer runtimes read older files, not newer.
    model = helper.make_model(graph, opset_imports=opsets, producer_name="faststyle export_onnx.py",
                              ir_version=helper.find_min_ir_version_for(opsets))
    model.doc_string = "faststyle: image and stylized are float32 N x 3 x H x W RGB, 0...255"
    onnx.checker.check_model(model, full_check=True)
    return model


def write_atomic(path, data):
    """Writes `data` to a hidden temporary name beside `path`, syncs it and renames it into
    place, as `train` and `infer` write: a failure (a full disk) leaves no partial file under
    either name."""
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def reason(e):
    """An OSError in a user's words ("no space left on device"), without errno or file."""
    text = os.strerror(e.errno) if e.errno else str(e)
    return text[:1].lower() + text[1:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("model", help="style model (.safetensors)")
    ap.add_argument("output", help="ONNX file to write")
    ap.add_argument("--style", help="for a model with several styles: NAME, INDEX or a blend "
                                    "NAME:W,NAME:W (default: the first style)")
    ap.add_argument("--opset", type=int, default=17, help="ONNX opset (17 or newer; default 17)")
    a = ap.parse_args()
    if a.opset < 17:
        ap.error("--opset must be 17 or newer")
    try:
        model = build(load_weights(a.model, a.style), a.opset)
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"error: {a.model}: {e}")
    try:
        write_atomic(a.output, model.SerializeToString())
    except OSError as e:
        sys.exit(f"error: cannot write {a.output}: {reason(e)}")
    print(f"wrote {a.output} (opset {a.opset}, dynamic height and width)")


if __name__ == "__main__":
    main()
