"""A generated sample clip with exact ground truth, for the demo, tests and benchmarks.

A public-domain photograph bundled with matplotlib (Grace Hopper, U.S. Navy photo) is cut
out with an elliptical mask and moved, scaled and rotated over a procedurally textured,
slowly panning background; every frame's mask and box are known exactly. Without
matplotlib (the ``demo`` extra) a procedural textured object is used instead. The project
ships no third-party video.

``scenario`` clips test the lost-target handling: the object is covered by an occluder
("occlusion"), leaves the frame and comes back ("exit"), or is covered while a second,
similar-looking object appears elsewhere ("distractor"); each frame says whether the object
is fully hidden, and its mask and box are those of the visible part.

``OracleTracker`` replays that ground truth through the ``Tracker`` interface, so the whole
pipeline (decode, sinks, encode) can be checked and measured without a network.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = ["SCENARIOS", "OracleTracker", "SyntheticFrame", "frames", "make_clip", "scenario"]

PHOTO_SOURCE = "matplotlib sample data grace_hopper.jpg (U.S. Navy photograph, public domain)"
PROCEDURAL_SOURCE = "procedural texture (matplotlib not installed)"


@dataclass
class SyntheticFrame:
    image: np.ndarray  # HxWx3 uint8 BGR
    mask: np.ndarray  # HxW bool
    box: tuple[float, float, float, float]  # x, y, w, h of the mask (inclusive pixel extent)
    visible: float = 1.0  # fraction of the object's pixels that are in view (0: fully hidden)


def _object_image(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """The sprite (BGR), its alpha mask and where it comes from."""
    try:
        from matplotlib import cbook

        img = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    except (ImportError, OSError, ValueError):
        img = None
    if img is None:
        yy, xx = np.mgrid[0:260, 0:200]
        img = np.stack([128 + 100 * np.sin(xx / 9.0), 128 + 100 * np.cos(yy / 7.0),
                        rng.integers(60, 200, (260, 200))], axis=-1).astype(np.uint8)
        source = PROCEDURAL_SOURCE
    else:
        img = cv2.resize(img[40:560, 56:456], (200, 260), interpolation=cv2.INTER_AREA)
        source = PHOTO_SOURCE
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (w // 2, h // 2), (w // 2 - 2, h // 2 - 2), 0, 0, 360, 255, -1)
    return img, mask, source


def _background(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A muted, natural-looking texture (stone/foliage-like)."""
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


def _pan(t: int, travel: int) -> int:
    """Background offset at frame ``t``: 2 px a frame, back and forth over ``travel`` pixels."""
    if travel <= 0:
        return 0
    step = (2 * t) % (2 * travel)
    return step if step <= travel else 2 * travel - step


def frames(n: int = 90, size: tuple[int, int] = (640, 360), seed: int = 0) -> Iterator[SyntheticFrame]:
    """Frame by frame, in constant memory: the object drifts, breathes in scale and rotates."""
    rng = np.random.default_rng(seed)
    sprite, alpha, _ = _object_image(rng)
    w, h = size
    travel = min(2 * max(n - 1, 0), w // 2)
    bg = _background((w + travel, h), rng)
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
        offset = _pan(t, travel)
        view = bg[:, offset:offset + w].astype(np.float32)
        image = (a * warped + (1 - a) * view).astype(np.uint8)
        mask = a[..., 0] > 0.5
        x, y, bw, bh = cv2.boundingRect(mask.view(np.uint8))
        yield SyntheticFrame(image, mask, (float(x), float(y), float(bw), float(bh)))


SCENARIOS = ("occlusion", "exit", "distractor")


def _paste(image: np.ndarray, sprite: np.ndarray, alpha: np.ndarray, center: tuple[float, float], scale: float,
           size: tuple[int, int]) -> np.ndarray:
    """Blend a scaled sprite centred at ``center`` into ``image`` in place; return its coverage (HxW float)."""
    sh, sw = sprite.shape[:2]
    m = cv2.getRotationMatrix2D((sw / 2, sh / 2), 0.0, scale)
    m[:, 2] += (center[0] - sw / 2, center[1] - sh / 2)
    warped = cv2.warpAffine(sprite, m, size, flags=cv2.INTER_LINEAR).astype(np.float32)
    a = cv2.warpAffine(alpha, m, size, flags=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    image[...] = a[..., None] * warped + (1 - a[..., None]) * image
    return a


def _distractor_sprite(sprite: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A different object of the same size and outline: a colourful procedural texture with the sprite's
    mean tone (a mirrored copy of the photo is the same object to the network, not a distractor)."""
    h, w = sprite.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    tex = np.stack([128 + 90 * np.sin(xx / 7.0 + 1.0), 128 + 90 * np.cos(yy / 5.0),
                    rng.integers(40, 220, (h, w))], axis=-1).astype(np.float32)
    tex += sprite.reshape(-1, 3).mean(axis=0) - tex.reshape(-1, 3).mean(axis=0)
    return np.clip(tex, 0, 255).astype(np.uint8)


def scenario(kind: str, n: int = 70, size: tuple[int, int] = (640, 360), seed: int = 0,
             hidden: tuple[int, int] = (24, 48)) -> Iterator[SyntheticFrame]:
    """A clip where the object is fully hidden on frames ``hidden[0] <= t < hidden[1]``, with exact ground truth.

    ``occlusion``: an opaque textured board slides over the object (3 frames partial on
    each side), stays on it while it drifts, and slides away. ``exit``: the object leaves
    the frame to the right and comes back. ``distractor``: as ``occlusion``, and a
    similar object (same size and outline, other texture) appears near the right edge when the object is hidden and
    stays. The mask and box are the visible part of the object; ``visible`` its fraction.
    """
    if kind not in SCENARIOS:
        raise ValueError(f"unknown scenario {kind!r}; known: {', '.join(SCENARIOS)}")
    rng = np.random.default_rng(seed)
    sprite, alpha, _ = _object_image(rng)
    w, h = size
    bg = _background((w, h), rng)
    board = _background((w, h), np.random.default_rng(seed + 1000))
    board = cv2.addWeighted(board, 0.6, np.full_like(board, (70, 90, 110)), 0.4, 0)
    scale = (0.32 + 0.06 * rng.random()) * h / sprite.shape[0]
    half_w, half_h = scale * sprite.shape[1] / 2, scale * sprite.shape[0] / 2
    h0, h1 = hidden
    start_x = w * (0.25 + 0.1 * rng.random())
    cy0 = h * (0.45 + 0.1 * rng.random())
    ramp = 3
    look_alike = _distractor_sprite(sprite, rng)
    area = float(np.count_nonzero(alpha > 127)) * scale * scale  # in-view or not
    for t in range(n):
        cy = cy0 + 0.04 * h * math.sin(t / 9.0)
        if kind == "exit":
            # right edge at t = h0 - ramp .. h0: leaves over `ramp` frames; back symmetrically after h1
            out_x = w + half_w + 2.0
            enter_x = w - half_w
            speed = (out_x - enter_x) / ramp
            if t < h0 - ramp:
                cx = enter_x - speed * (h0 - ramp - t) * 0.35
            elif t < h1:
                cx = min(enter_x + speed * (t - (h0 - ramp)), out_x)
            else:
                cx = max(out_x - speed * (t - h1 + 1), enter_x - speed * (t - h1 - ramp) * 0.35)
        else:
            cx = start_x + 1.5 * t
        image = bg.astype(np.float32)
        full = _paste(image, sprite, alpha, (cx, cy), scale, size) > 0.5
        if kind == "distractor" and t >= h0:
            _paste(image, look_alike, alpha, (0.85 * w, cy0), scale, size)
        mask = full
        if kind in ("occlusion", "distractor"):
            bx0, by0 = cx - half_w - 12, cy - half_h - 12
            bx1, by1 = cx + half_w + 12, cy + half_h + 12
            width = bx1 - bx0
            if h0 - ramp <= t < h1 + ramp:
                frac = min((t - (h0 - ramp) + 1) / (ramp + 1), 1.0, (h1 + ramp - t) / (ramp + 1))
                if t < h1:  # sliding in from the left, then covering
                    x1 = bx0 + frac * width if frac < 1 else bx1
                    x0 = x1 - width
                else:  # sliding out to the right
                    x0 = bx1 - frac * width
                    x1 = x0 + width
                occ = np.zeros((h, w), bool)
                occ[int(max(by0, 0)):int(min(by1, h)), int(max(np.floor(x0), 0)):int(min(np.ceil(x1), w))] = True
                image[occ] = board[occ]
                mask = full & ~occ
        visible = min(float(np.count_nonzero(mask)) / area, 1.0)
        x, y, bw, bh = cv2.boundingRect(mask.view(np.uint8))
        yield SyntheticFrame(np.clip(image, 0, 255).astype(np.uint8), mask, (float(x), float(y), float(bw),
                                                                               float(bh)), visible)


def make_clip(out_dir: str | Path, n_frames: int = 90, size: tuple[int, int] = (640, 360), seed: int = 0,
              fps: float = 25.0, masks: bool = True) -> dict[str, Any]:
    """Write ``clip.mp4`` (H.264), ``masks/NNNNN.png`` (0/255) and ``groundtruth.json``; return the ground truth.

    The boxes and masks are exact for the generated frames; the video is lossy-encoded.
    """
    from siamtrack.io.sinks import VideoSink

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if masks:
        (out / "masks").mkdir(exist_ok=True)
    video = VideoSink(out / "clip.mp4", fps, size, crf=18, preset="veryfast")  # a clean source, made once
    boxes = []
    try:
        for i, fr in enumerate(frames(n_frames, size, seed)):
            video.write(fr.image)
            if masks:
                cv2.imwrite(str(out / "masks" / f"{i:05d}.png"), fr.mask.astype(np.uint8) * 255)
            boxes.append(list(fr.box))
    finally:
        video.close()
    _, _, source = _object_image(np.random.default_rng(seed))
    gt = {"video": "clip.mp4", "fps": fps, "size": list(size), "frames": n_frames, "seed": seed,
          "boxes_xywh": boxes, "init_box": boxes[0], "masks": "masks/%05d.png" if masks else None,
          "object": source, "generator": "siamtrack.io.synthetic"}
    (out / "groundtruth.json").write_text(json.dumps(gt, indent=1) + "\n")
    return gt


@dataclass(frozen=True)
class OraclePreset:
    name: str = "oracle"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OracleTracker:
    """The ``Tracker`` interface answering with a generated clip's exact ground truth.

    Object 0 follows the clip's object (mask, box, rotated box of the mask); further objects
    stay where they were initialised. ``start`` is the clip frame ``init`` is called on.
    No network runs, so the pipeline around it can be checked exactly and timed alone.
    """

    model_name = "oracle"
    arch = "oracle"
    precision = "none"
    device = "cpu"
    preset = OraclePreset()

    def __init__(self, n_frames: int, size: tuple[int, int], seed: int = 0, start: int = 0) -> None:
        self.clip = (n_frames, size, seed)
        self.start = start
        self._truth: Iterator[SyntheticFrame] = iter(())
        self._boxes: list[tuple[float, float, float, float]] = []

    def init(self, frame: np.ndarray, boxes: Sequence[float] | Sequence[Sequence[float]], *,
             color: str = "bgr") -> list[int]:
        from siamtrack.results import BoxClippedWarning, clip_box

        many = isinstance(boxes[0], (list, tuple, np.ndarray))
        self._boxes = []
        for box in boxes if many else [boxes]:
            kept, clipped = clip_box(box, (frame.shape[1], frame.shape[0]))
            if clipped:
                warnings.warn(f"box clipped to the frame: {','.join(f'{v:g}' for v in kept)}", BoxClippedWarning,
                              stacklevel=2)
            self._boxes.append(kept)
        self._truth = frames(*self.clip)
        for _ in range(self.start + 1):
            next(self._truth)
        return list(range(len(self._boxes)))

    def reinit(self, frame: np.ndarray, obj_id: int, box: Sequence[float], *, color: str = "bgr") -> int:
        """As ``Tracker.reinit``: object ``obj_id`` (a new one when it is the next id) now stays at
        ``box``; object 0 keeps following the clip, as its truth does not move with a correction."""
        from siamtrack.results import clip_box

        kept = clip_box(box, (frame.shape[1], frame.shape[0]))[0]
        if obj_id == len(self._boxes):
            self._boxes.append(kept)
        else:
            self._boxes[obj_id] = kept
        return obj_id

    def track(self, frame: np.ndarray, *, color: str = "bgr") -> list[Any]:
        from siamtrack.geometry import box_mask, rotated_box_from_mask
        from siamtrack.results import TrackResult

        truth = next(self._truth)
        results = []
        for obj_id, box in enumerate(self._boxes):
            mask, box = (truth.mask, truth.box) if obj_id == 0 else (box_mask(frame.shape[:2], box), box)
            center, wh = (box[0] + box[2] / 2, box[1] + box[3] / 2), box[2:]
            rotated, source = rotated_box_from_mask(mask.view(np.uint8), center, wh)
            results.append(TrackResult(obj_id, tuple(box), rotated, mask, mask.astype(np.float32), 1.0, source))
        return results
