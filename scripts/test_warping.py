"""Tests of the warping error and its occlusion mask (run by tests/temporal.rs, or
`.venv/bin/python -m unittest scripts/test_warping.py`)."""
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warping  # noqa: E402

SIZE = 48


def layered_motion(frames=4, pan=3, obj=4):
    """A background panning `pan` whole pixels a frame to the left (the frame moves right)
    under a disc moving `obj` whole pixels a frame to the right."""
    bg, disc = [], []
    for t in range(frames):
        bg.append(warping.translate(20 + pan * t, 20).ravel().tolist())
        # Frame pixel (x, y) shows disc-photo pixel (x - 10 - obj t + 30, y - 24 + 30).
        disc.append(warping.translate(30 - 10 - obj * t, 30 - 24).ravel().tolist())
    return warping.Motion({"size": [SIZE, SIZE], "frames": frames,
                           "layers": [{"matrices": bg}, {"matrices": disc, "region": [30, 30, 6.5]}]})


def photos(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0, 255, (120, 120, 3)), rng.uniform(0, 255, (60, 60, 3))]


class Mask(unittest.TestCase):
    def test_the_uncovered_region_and_border_are_masked_and_nothing_else(self):
        m = layered_motion()
        backward, forward = m.pair_flows(0)
        mask = warping.visible(backward, forward)
        xs, ys = warping.grid(SIZE, SIZE)
        def disc_at(t, dx=0):
            return (xs + dx - 10 - 4 * t) ** 2 + (ys - 24) ** 2 < 6.5 ** 2

        # Background at frame 1 whose point lay under the disc at frame 0 (3 px to the right,
        # as the background pans): frame 0 never showed it.
        uncovered = ~disc_at(1) & disc_at(0, dx=3)
        # The background pans 3 px: its last 3 columns at frame 1 were outside frame 0.
        border = (xs >= SIZE - 3) & ~disc_at(1)
        self.assertGreater(uncovered.sum(), 20)
        expected = ~(uncovered | border)
        np.testing.assert_array_equal(mask, expected)

    def test_the_exact_flow_warps_frame_t_onto_frame_t_plus_1(self):
        m = layered_motion()
        ph = photos()
        a, b = m.render(ph, 1), m.render(ph, 2)
        backward, forward = m.pair_flows(1)
        mask = warping.visible(backward, forward)
        np.testing.assert_allclose(warping.warp(a, backward)[mask], b[mask], atol=1e-9)


class Error(unittest.TestCase):
    def stylized(self, m, flicker, seed=1):
        """An output that follows the motion exactly (frame t+1 is frame t warped, new
        content where frame t did not show it), plus `flicker` levels of noise per frame."""
        rng = np.random.default_rng(seed)
        out = [np.rint(rng.uniform(0, 255, (SIZE, SIZE, 3)))]
        for t in range(m.frames - 1):
            backward, forward = m.pair_flows(t)
            nxt = np.rint(rng.uniform(0, 255, (SIZE, SIZE, 3)))
            mask = warping.visible(backward, forward)
            nxt[mask] = warping.warp(out[-1], backward)[mask]
            out.append(nxt)
        noise = np.random.default_rng(seed + 1)
        return [np.clip(f + noise.normal(0, flicker, f.shape), 0, 255) if flicker else f for f in out]

    def test_zero_for_an_exactly_warped_output_and_growing_with_flicker(self):
        m = layered_motion(frames=5)
        ph = photos()
        inp = [m.render(ph, t) for t in range(m.frames)]
        levels = [0, 2, 5, 10]
        clips = [inp] + [self.stylized(m, f) for f in levels]
        r = warping.measure(clips, m.pair_flows)
        errors = r["warping_error"]
        self.assertEqual(r["frames"], 5)
        self.assertAlmostEqual(errors[0], 0.0, places=12)  # the input follows its own motion
        self.assertAlmostEqual(errors[1], 0.0, places=12)
        for lo, hi in zip(errors[1:], errors[2:]):
            self.assertLess(lo, hi)
        # Gaussian flicker of s levels in both frames: 3 channels x 2 s^2 / 255^2.
        self.assertAlmostEqual(errors[-1] / (6 * 10 ** 2 / 255 ** 2), 1.0, delta=0.15)

    def test_through_video_files_with_the_motion_found_beside_the_clip(self):
        flicker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flicker.py")
        photo = os.path.join(os.path.dirname(flicker), "..", "datasets", "styles", "udnie.jpg")
        with tempfile.TemporaryDirectory() as d:
            clip = os.path.join(d, "pan.mkv")
            subprocess.run([sys.executable, flicker, "--make-clip", photo, clip, "--motion-kind", "pan",
                            "--frames", "4", "--size", "64", "--noise", "0"], check=True)
            out = os.path.join(d, "r.json")
            subprocess.run([sys.executable, flicker, clip, clip, "--json", out], check=True,
                           stdout=subprocess.DEVNULL)
            import json
            with open(out) as f:
                rec = json.load(f)
            self.assertTrue(rec["flow"].startswith("exact"))
            self.assertEqual(rec["frames"], 4)
            # Sub-pixel motion: only resampling blur remains, far below a still frame's change.
            self.assertLess(rec["input_warping_error"], 0.01)
            self.assertGreater(rec["visible"], 0.9)


if __name__ == "__main__":
    unittest.main()
