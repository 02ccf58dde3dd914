"""PyTorch reference networks, copied from the PyTorch examples' fast_neural_style
(transformer_net.py, vgg.py, utils.py) so that state-dict names and numerics match.

Differences from the example, none of which change the numbers:
- Vgg16 is built from plain torch.nn layers and loads `features.N.*` from our VGG16
  safetensors file instead of downloading torchvision's weights.
- Vgg16.forward can stop early (`upto`), for a content pass that needs only relu2_2.
- normalize_batch does not divide its argument in place (the example uses div_).
"""
import json
import os
from collections import namedtuple

import torch
import torch.nn.functional as F

import st


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
    tensors, meta = st.load(path)
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
        tensors, _ = st.load(path)
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
