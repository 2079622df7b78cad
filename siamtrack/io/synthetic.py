"""A generated sample clip with exact ground truth, for the demo, tests and benchmarks.

A public-domain photograph bundled with matplotlib (Grace Hopper, U.S. Navy photo) is cut
out with an elliptical mask and moved, scaled and rotated over a procedurally textured
background; every frame's mask and box are known exactly. Without matplotlib a
procedural textured object is used instead. The project ships no third-party video.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass
class SyntheticFrame:
    image: np.ndarray  # HxWx3 uint8 BGR
    mask: np.ndarray  # HxW bool
    box: tuple[float, float, float, float]  # x, y, w, h of the mask


def _object_image(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The sprite (BGR) and its alpha mask."""
    try:
        from matplotlib import cbook

        img = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    except (ImportError, OSError, ValueError):
        img = None
    if img is None:
        img = np.zeros((300, 256, 3), np.uint8)
        yy, xx = np.mgrid[0:300, 0:256]
        img[..., 0] = (128 + 100 * np.sin(xx / 9.0)).astype(np.uint8)
        img[..., 1] = (128 + 100 * np.cos(yy / 7.0)).astype(np.uint8)
        img[..., 2] = rng.integers(60, 200, (300, 256), dtype=np.uint8)
    else:
        img = cv2.resize(img[40:560, 56:456], (200, 260), interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (w // 2, h // 2), (w // 2 - 2, h // 2 - 2), 0, 0, 360, 255, -1)
    return img, mask


def _background(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A muted, natural-looking texture (stone/foliage-like), wider than the frame so it can pan."""
    w, h = size
    coarse = cv2.resize(rng.normal(0, 1, (h // 24 + 2, w // 24 + 2)).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    mid = cv2.resize(rng.normal(0, 1, (h // 6 + 2, w // 6 + 2)).astype(np.float32), (w, h),
                     interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.8)
    lum = 105 + 30 * coarse + 14 * mid + 6 * fine
    tint = np.array([0.85, 1.0, 0.95], np.float32)  # BGR: slightly green-brown
    bg = lum[..., None] * tint + np.array([0, 6, 10], np.float32) * coarse[..., None]
    for _ in range(10):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        tone = float(rng.integers(60, 170))
        cv2.circle(bg, c, int(rng.integers(8, 40)), [tone * 0.8, tone, tone * 0.9], -1)
    return cv2.GaussianBlur(np.clip(bg, 0, 255).astype(np.uint8), (0, 0), 1.0)


def frames(n: int = 90, size: tuple[int, int] = (640, 360), seed: int = 0) -> Iterator[SyntheticFrame]:
    """Frame by frame (constant memory): the object drifts, breathes in scale and rotates."""
    rng = np.random.default_rng(seed)
    sprite, alpha = _object_image(rng)
    w, h = size
    pan = 2
    bg = _background((w + pan * n, h), rng)
    sh, sw = sprite.shape[:2]
    base_scale = 0.55 * min(w, h) / max(sh, sw)
    for t in range(n):
        u = t / max(n - 1, 1)
        cx = w * (0.3 + 0.4 * u + 0.05 * math.sin(6.0 * u))
        cy = h * (0.5 + 0.12 * math.sin(4.0 * u + 0.5))
        scale = base_scale * (1.0 + 0.25 * math.sin(3.0 * u))
        angle = 25.0 * math.sin(2.5 * u)
        m = cv2.getRotationMatrix2D((sw / 2, sh / 2), angle, scale)
        m[:, 2] += (cx - sw / 2, cy - sh / 2)
        warped = cv2.warpAffine(sprite, m, size, flags=cv2.INTER_LINEAR)
        a = cv2.warpAffine(alpha, m, size, flags=cv2.INTER_LINEAR).astype(np.float32)[..., None] / 255.0
        view = bg[:, pan * t: pan * t + w].astype(np.float32)
        image = (a * warped + (1 - a) * view).astype(np.uint8)
        mask = a[..., 0] > 0.5
        ys, xs = np.nonzero(mask)
        box = (float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1))
        yield SyntheticFrame(image, mask, box)


def make_clip(out_dir: str | Path, n_frames: int = 90, size: tuple[int, int] = (640, 360), seed: int = 0,
              fps: float = 25.0) -> dict:
    """Write ``clip.mp4`` (H.264), ``masks/NNNNN.png`` and ``groundtruth.json``; returns the ground truth."""
    from siamtrack.io.sinks import VideoSink

    out = Path(out_dir)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    video = VideoSink(out / "clip.mp4", fps, size)
    boxes = []
    try:
        for i, fr in enumerate(frames(n_frames, size, seed)):
            video.write(fr.image)
            cv2.imwrite(str(out / "masks" / f"{i:05d}.png"), fr.mask.astype(np.uint8) * 255)
            boxes.append([round(v, 2) for v in fr.box])
    finally:
        video.close()
    gt = {"video": "clip.mp4", "fps": fps, "size": list(size), "frames": n_frames, "boxes_xywh": boxes,
          "init_box": boxes[0], "source": "siamtrack.io.synthetic (matplotlib sample photo, public domain)"}
    (out / "groundtruth.json").write_text(json.dumps(gt, indent=1) + "\n")
    return gt
