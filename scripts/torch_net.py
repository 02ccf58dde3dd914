"""The PyTorch fast-neural-style example's code, the one PyTorch copy of faststyle's network:
TransformerNet, Vgg16, gram_matrix and normalize_batch copied from the example
(transformer_net.py, vgg.py, utils.py) so that state-dict names and numerics match, the
example's training losses, and safetensors files read and written with the `safetensors`
package. Used by the tests, the converters, the export and the benchmarks.

Differences from the example, none of which change the numbers:
- Vgg16 is built from plain torch.nn layers and loads `features.N.*` from our VGG16
  safetensors file instead of downloading torchvision's weights.
- Vgg16.forward can stop early (`upto`), for a content pass that needs only relu2_2.
- normalize_batch does not divide its argument in place (the example uses div_).

As a program, the independent reference of faststyle's integration tests (fp32, CPU):
  torch_net.py stylize --checkpoint F --input IMG --output OUT.safetensors [--style NAME|INDEX]
  torch_net.py train --checkpoint-init F|none --vgg F --content IMG --style IMG --steps N
                     [--lr 1e-3] [--content-weight 1e5] [--style-weight 1e10] [--tv-weight 0]
                     --out OUT.json [--save-final F]

stylize writes the raw (unclamped) network output, 1x3xHxW float32, as tensor `output`. The
network runs as the example's (no padding to a multiple of 4), so compare at sizes that are
multiples of 4, where the output size equals the input size.

train re-creates one run of the example's training loop on a single content image (batch of
1, no resizing or cropping) and writes each step's losses, computed before that step's
update: {"content": [...], "style": [...], "tv": [...], "total": [...]}.
"""
import argparse
import json
import os
import tempfile
from collections import namedtuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes


def load(path):
    """(dict name -> CPU tensor, metadata dict of strings) of a safetensors file."""
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, dict(meta)


def save(path, tensors, metadata=None):
    """Writes tensors (moved to CPU, made contiguous) as safetensors, atomically: a temporary
    file in the same folder, then a rename, so that a failure never leaves a half file."""
    data = safetensors_bytes({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()},
                             {str(k): str(v) for k, v in (metadata or {}).items()})
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; use the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

class TransformerNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        # Initial convolution layers
        self.conv1 = ConvLayer(3, 32, kernel_size=9, stride=1)
        self.in1 = torch.nn.InstanceNorm2d(32, affine=True)
        self.conv2 = ConvLayer(32, 64, kernel_size=3, stride=2)
        self.in2 = torch.nn.InstanceNorm2d(64, affine=True)
        self.conv3 = ConvLayer(64, 128, kernel_size=3, stride=2)
        self.in3 = torch.nn.InstanceNorm2d(128, affine=True)
        # Residual layers
        self.res1 = ResidualBlock(128)
        self.res2 = ResidualBlock(128)
        self.res3 = ResidualBlock(128)
        self.res4 = ResidualBlock(128)
        self.res5 = ResidualBlock(128)
        # Upsampling layers
        self.deconv1 = UpsampleConvLayer(128, 64, kernel_size=3, stride=1, upsample=2)
        self.in4 = torch.nn.InstanceNorm2d(64, affine=True)
        self.deconv2 = UpsampleConvLayer(64, 32, kernel_size=3, stride=1, upsample=2)
        self.in5 = torch.nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = ConvLayer(32, 3, kernel_size=9, stride=1)
        # Non-linearities
        self.relu = torch.nn.ReLU()

    def forward(self, X):
        y = self.relu(self.in1(self.conv1(X)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        y = self.res1(y)
        y = self.res2(y)
        y = self.res3(y)
        y = self.res4(y)
        y = self.res5(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        y = self.deconv3(y)
        return y


class ConvLayer(torch.nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride):
        super().__init__()
        reflection_padding = kernel_size // 2
        self.reflection_pad = torch.nn.ReflectionPad2d(reflection_padding)
        self.conv2d = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        out = self.reflection_pad(x)
        out = self.conv2d(out)
        return out


class ResidualBlock(torch.nn.Module):
    """introduced in: https://arxiv.org/abs/1512.03385
    recommended architecture: http://torch.ch/blog/2016/02/04/resnets.html
    """

    def __init__(self, channels):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = torch.nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = torch.nn.InstanceNorm2d(channels, affine=True)
        self.relu = torch.nn.ReLU()

    def forward(self, x):
        residual = x
        out = self.relu(self.in1(self.conv1(x)))
        out = self.in2(self.conv2(out))
        out = out + residual
        return out


class UpsampleConvLayer(torch.nn.Module):
    """Upsamples the input and then does a convolution.
    This method gives better results compared to ConvTranspose2d.
    ref: http://distill.pub/2016/deconv-checkerboard/
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride, upsample=None):
        super().__init__()
        self.upsample = upsample
        reflection_padding = kernel_size // 2
        self.reflection_pad = torch.nn.ReflectionPad2d(reflection_padding)
        self.conv2d = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        x_in = x
        if self.upsample:
            x_in = F.interpolate(x_in, mode="nearest", scale_factor=self.upsample)
        out = self.reflection_pad(x_in)
        out = self.conv2d(out)
        return out


def style_names(tensors, meta):
    """Style names of a faststyle checkpoint in row order (one name for a one-style model)."""
    if "styles" in meta:
        return json.loads(meta["styles"])
    rows = tensors["in1.weight"].shape
    if len(rows) == 2:
        return [str(i) for i in range(rows[0])]
    return [os.path.splitext(meta.get("style", "style"))[0]]


def transformer_from_file(path, style=None):
    """TransformerNet with weights from a faststyle safetensors checkpoint (fp32 on CPU).

    A multi-style checkpoint's instance norms are [N, C]: `style` (a name or an index) picks
    the row that the example's one-style network gets."""
    tensors, meta = load(path)
    names = style_names(tensors, meta)
    if len(names) > 1:
        if style is None:
            raise ValueError(f"{path}: holds {len(names)} styles ({', '.join(names)}); pick one")
        row = names.index(style) if style in names else int(style)
        tensors = {k: (v[row] if v.dim() == 2 else v) for k, v in tensors.items()}
    net = TransformerNet()
    expected = net.state_dict()
    missing = [k for k in expected if k not in tensors]
    if missing:
        raise ValueError(f"{path}: missing tensors: {', '.join(missing)}")
    for k, v in expected.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise ValueError(f"{path}: {k} has shape {tuple(tensors[k].shape)}, expected {tuple(v.shape)}")
    net.load_state_dict({k: tensors[k].float() for k in expected})
    return net, meta


# torchvision vgg16().features[:23]: conv indices and (in, out) channels
VGG_CONVS = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256),
             12: (256, 256), 14: (256, 256), 17: (256, 512), 19: (512, 512), 21: (512, 512)}
VGG_POOLS = (4, 9, 16)
VGG_TAPS = {3: "relu1_2", 8: "relu2_2", 15: "relu3_3", 22: "relu4_3"}
VggOutputs = namedtuple("VggOutputs", ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])


class Vgg16(torch.nn.Module):
    """Frozen VGG16 trunk, layer indices as torchvision's `vgg16().features`."""

    def __init__(self, weights=None):
        super().__init__()
        layers = []
        for i in range(23):
            if i in VGG_CONVS:
                layers.append(torch.nn.Conv2d(*VGG_CONVS[i], kernel_size=3, padding=1))
            elif i in VGG_POOLS:
                layers.append(torch.nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                # in place as torchvision; safe since each tapped ReLU is followed by a pool
                layers.append(torch.nn.ReLU(inplace=True))
        self.features = torch.nn.Sequential(*layers)
        if weights is not None:
            self.load(weights)
        for p in self.parameters():
            p.requires_grad = False

    def load(self, path):
        tensors, _ = load(path)
        sd = self.state_dict()
        for k, v in sd.items():
            if k not in tensors:
                raise ValueError(f"{path}: missing tensor {k}")
            if tuple(tensors[k].shape) != tuple(v.shape):
                raise ValueError(f"{path}: {k} has shape {tuple(tensors[k].shape)}, expected {tuple(v.shape)}")
        self.load_state_dict({k: tensors[k].float() for k in sd})  # deeper tensors ignored

    def forward(self, X, upto="relu4_3"):
        """Returns VggOutputs; with upto='relu2_2' stops there (later fields None)."""
        out = {}
        h = X
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in VGG_TAPS:
                out[VGG_TAPS[i]] = h
                if VGG_TAPS[i] == upto:
                    break
        return VggOutputs(*(out.get(n) for n in VggOutputs._fields))


def gram_matrix(y):
    (b, ch, h, w) = y.size()
    features = y.reshape(b, ch, w * h)  # example: view(); reshape also takes channels_last
    features_t = features.transpose(1, 2)
    gram = features.bmm(features_t) / (ch * h * w)
    return gram


def normalize_batch(batch):
    # normalize using imagenet mean and std
    mean = batch.new_tensor([0.485, 0.456, 0.406]).view(-1, 1, 1)
    std = batch.new_tensor([0.229, 0.224, 0.225]).view(-1, 1, 1)
    batch = batch.div(255.0)  # the example: batch.div_(255.0), same numbers
    return (batch - mean) / std


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
    save(a.output, {"output": y.contiguous()},
            {"created_by": "faststyle torch_net.py stylize", "input": os.path.basename(a.input)})
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
        save(a.save_final, transformer.state_dict(),
                {"format": "faststyle.transformer", "format_version": "1",
                 "style": os.path.splitext(os.path.basename(a.style))[0],
                 "iterations": str(a.steps), "content_weight": str(a.content_weight),
                 "style_weight": str(a.style_weight), "image_size": str(x.shape[-1]),
                 "created_by": "faststyle torch_net.py train"})


def main():
    doc = __doc__.split("As a program, ")[1]
    ap = argparse.ArgumentParser(description=doc.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=doc.split("\n", 1)[1])
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
