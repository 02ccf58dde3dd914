"""The warping error of a video (Lai et al. 2018, "Learning Blind Video Temporal Consistency"),
and clips with known motion made from photos, whose exact optical flow it can use.

For consecutive frames t, t+1: warp frame t to t+1 along the *input's* backward flow B (for each
pixel p of frame t+1, where it was in frame t: p + B(p)), and take

    E(t) = sum_p M(p) * ||V[t+1](p) - V[t](p + B(p))||^2 / sum_p M(p)

with RGB in 0..1 and the squared norm over the three channels; the clip's warping error is the
mean of E(t) over its pairs. M marks the pixels visible in both frames: p + B(p) lies inside
frame t, and the forward-backward check of Sundaram et al. 2010 (as in Ruder et al. 2016)
holds, |B(p) + F(p + B(p))|^2 <= 0.01 (|B(p)|^2 + |F(p + B(p))|^2) + 0.5, with F the forward
flow t -> t+1: it fails where frame t+1 shows what frame t hid (uncovered by a moving object).

Flows come from the motion that made a clip (exact), or from OpenCV's DIS estimator for any
other clip. Pixel centres are at whole numbers; flows are H x W x 2 arrays of (dx, dy).
"""
import json

import numpy as np


def grid(h, w):
    """Pixel positions: x and y, both H x W float64."""
    ys, xs = np.mgrid[0:h, 0:w]
    return xs.astype(np.float64), ys.astype(np.float64)


def bilinear(img, qx, qy):
    """img (H x W or H x W x C) sampled at positions (qx, qy), bilinearly, edges repeated."""
    h, w = img.shape[:2]
    qx = np.clip(qx, 0, w - 1)
    qy = np.clip(qy, 0, h - 1)
    x0 = np.floor(qx).astype(np.int64)
    y0 = np.floor(qy).astype(np.int64)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx = qx - x0
    fy = qy - y0
    if img.ndim == 3:
        fx = fx[..., None]
        fy = fy[..., None]
    img = img.astype(np.float64)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def warp(img, flow):
    """img moved along `flow`: output pixel p shows img at p + flow(p)."""
    xs, ys = grid(*flow.shape[:2])
    return bilinear(img, xs + flow[..., 0], ys + flow[..., 1])


def visible(backward, forward):
    """The pixels of frame t+1 visible in frame t too (bool H x W): the backward flow leads
    inside frame t and agrees with the forward flow there."""
    h, w = backward.shape[:2]
    xs, ys = grid(h, w)
    qx = xs + backward[..., 0]
    qy = ys + backward[..., 1]
    inside = (qx >= 0) & (qx <= w - 1) & (qy >= 0) & (qy <= h - 1)
    f = bilinear(forward, qx, qy)
    gap = ((backward + f) ** 2).sum(-1)
    scale = (backward ** 2).sum(-1) + (f ** 2).sum(-1)
    return inside & (gap <= 0.01 * scale + 0.5)


def pair_error(a, b, backward, mask):
    """E between frame a (t) and b (t+1), both H x W x 3 in 0..255, over `mask`."""
    diff = ((b.astype(np.float64) - warp(a, backward)) / 255.0) ** 2
    n = mask.sum()
    return float((diff.sum(-1) * mask).sum() / n) if n else 0.0


def measure(clips, pair_flows):
    """Warping error, flicker change and frame count of clips read in step: `clips` is a list
    of frame iterables (H x W x 3 arrays), the input first; pair_flows(t, a, b) gives the
    input's (backward, forward) flows between its frames a = t and b = t + 1.

    Returns a dict: frames, visible (mean share of pixels counted), and per clip (in order)
    warping_error (mean E) and change (mean |V[t+1] - V[t]|, the flicker ratio's numerator)."""
    n = len(clips)
    errors, changes = np.zeros(n), np.zeros(n)
    pairs, share, prev, frames = 0, 0.0, None, 0
    for current in zip(*clips):
        frames += 1
        if prev is not None:
            backward, forward = pair_flows(pairs, prev[0], current[0])
            mask = visible(backward, forward)
            for i in range(n):
                errors[i] += pair_error(prev[i], current[i], backward, mask)
                changes[i] += float(np.abs(current[i].astype(np.float64) - prev[i]).mean())
            share += float(mask.mean())
            pairs += 1
        prev = current
    if pairs == 0:
        raise ValueError("fewer than two frames")
    return {"frames": frames, "visible": share / pairs,
            "warping_error": (errors / pairs).tolist(), "change": (changes / pairs).tolist()}


def opencv_flows():
    """pair_flows for clips without a known motion: OpenCV's DIS estimator (medium preset) on
    the grey frames, both ways."""
    try:
        import cv2
    except ImportError:
        raise SystemExit("OpenCV is needed for clips without a known motion: "
                         ".venv/bin/pip install opencv-python-headless (scripts/setup.sh does)")
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def pair(t, a, b):
        ga = cv2.cvtColor(np.ascontiguousarray(a, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
        gb = cv2.cvtColor(np.ascontiguousarray(b, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
        backward = dis.calc(gb, ga, None).astype(np.float64)
        forward = dis.calc(ga, gb, None).astype(np.float64)
        return backward, forward

    return pair


# --- clips with a known motion -------------------------------------------------------------

def affine(a=1.0, b=0.0, c=0.0, d=1.0, tx=0.0, ty=0.0):
    """A 3 x 3 matrix mapping (x, y, 1)."""
    return np.array([[a, b, tx], [c, d, ty], [0, 0, 1]], dtype=np.float64)


def translate(tx, ty):
    return affine(tx=tx, ty=ty)


def rotate_zoom(degrees, zoom):
    """Rotation by `degrees` and magnification by `zoom` about the origin (as a frame -> photo
    map, a zoom > 1 shows less of the photo)."""
    r = np.radians(degrees)
    c, s = np.cos(r) / zoom, np.sin(r) / zoom
    return affine(c, -s, s, c)


class Motion:
    """A clip's motion: layers, bottom first, each a photo seen through one frame -> photo
    matrix per frame; a layer with a region (a disc in its photo's pixels: cx, cy, r) covers
    only the frame pixels that map inside it."""

    def __init__(self, spec):
        self.width, self.height = spec["size"]
        self.frames = spec["frames"]
        self.layers = spec["layers"]
        for layer in self.layers:
            layer["mats"] = [np.array(m, dtype=np.float64).reshape(3, 3) for m in layer["matrices"]]

    @staticmethod
    def load(path):
        with open(path) as f:
            return Motion(json.load(f))

    def spec(self):
        return {"size": [self.width, self.height], "frames": self.frames,
                "layers": [{k: v for k, v in layer.items() if k != "mats"} for layer in self.layers]}

    def _map(self, layer, t, xs, ys):
        m = self.layers[layer]["mats"][t]
        return (m[0, 0] * xs + m[0, 1] * ys + m[0, 2], m[1, 0] * xs + m[1, 1] * ys + m[1, 2])

    def top_layer(self, t):
        """Index of the layer seen at each pixel of frame t (H x W)."""
        xs, ys = grid(self.height, self.width)
        top = np.zeros((self.height, self.width), dtype=np.int64)
        for i, layer in enumerate(self.layers):
            region = layer.get("region")
            if region is None:
                top[:] = i
                continue
            px, py = self._map(i, t, xs, ys)
            cx, cy, r = region
            top[(px - cx) ** 2 + (py - cy) ** 2 < r * r] = i
        return top

    def flow(self, t_from, t_to):
        """Exact flow from frame t_from to frame t_to: where each pixel's surface point is
        in frame t_to (H x W x 2)."""
        xs, ys = grid(self.height, self.width)
        top = self.top_layer(t_from)
        out = np.zeros((self.height, self.width, 2))
        for i, layer in enumerate(self.layers):
            m = np.linalg.inv(layer["mats"][t_to]) @ layer["mats"][t_from]
            qx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
            qy = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
            sel = top == i
            out[..., 0][sel] = (qx - xs)[sel]
            out[..., 1][sel] = (qy - ys)[sel]
        return out

    def pair_flows(self, t, a=None, b=None):
        """The exact (backward, forward) flows between frames t and t + 1."""
        return self.flow(t + 1, t), self.flow(t, t + 1)

    def render(self, photos, t):
        """Frame t (H x W x 3, float64 0..255) from the layers' photos (H x W x 3 arrays)."""
        xs, ys = grid(self.height, self.width)
        top = self.top_layer(t)
        out = np.zeros((self.height, self.width, 3))
        for i, photo in enumerate(photos):
            px, py = self._map(i, t, xs, ys)
            sel = top == i
            out[sel] = bilinear(photo, px, py)[sel]
        return out


def make_motion(kind, size, frames, photo_sizes, seed=0):
    """The motion of a `kind` clip (still, pan, zoom, rotate, object, shake) of `frames` frames
    of size x size over photos of `photo_sizes` [(w, h), ...] (object uses two): the frame
    shows the middle of the photo at one photo pixel per frame pixel, then moves."""
    (pw, ph) = photo_sizes[0]
    centre = translate(pw / 2 - 0.5, ph / 2 - 0.5)
    to_centre = translate(-(size - 1) / 2, -(size - 1) / 2)
    rng = np.random.default_rng(seed)
    mid = (frames - 1) / 2
    mats = []
    shake = np.zeros(3)
    for t in range(frames):
        if kind == "still":
            m = centre @ to_centre
        elif kind == "pan":  # 1.7 px a frame to the right, a little down
            m = centre @ translate(1.7 * (t - mid), 0.4 * (t - mid)) @ to_centre
        elif kind == "zoom":  # 1 % closer a frame
            m = centre @ rotate_zoom(0.0, 1.01 ** (t - mid)) @ to_centre
        elif kind == "rotate":  # 0.5 degrees a frame
            m = centre @ rotate_zoom(0.5 * (t - mid), 1.0) @ to_centre
        elif kind in ("shake", "object"):
            if kind == "shake":  # a hand's tremor: smooth random offsets and tilts
                shake = 0.7 * shake + rng.normal(0, [1.2, 1.2, 0.25])
            m = centre @ translate(shake[0], shake[1]) @ rotate_zoom(shake[2], 1.0) @ to_centre
        else:
            raise ValueError(f"unknown motion {kind!r}")
        mats.append(m.ravel().tolist())
    layers = [{"matrices": mats}]
    if kind == "object":
        # A disc of the second photo (radius 0.2 size) crossing the frame at 2.5 px a frame.
        (qw, qh) = photo_sizes[1]
        r = 0.2 * size
        obj = []
        for t in range(frames):
            x = (size - 1) / 2 + 2.5 * (t - mid)
            y = (size - 1) / 2 + 0.5 * (t - mid)
            obj.append((translate(qw / 2, qh / 2) @ translate(-x, -y)).ravel().tolist())
        layers.append({"matrices": obj, "region": [qw / 2, qh / 2, r]})
    return Motion({"size": [size, size], "frames": frames, "layers": layers})
