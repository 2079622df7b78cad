"""Template/search pairs as SiamMask trains on them, cut with the tracker's own crop.

Every random choice of pair ``index`` comes from ``numpy.random.default_rng((seed, index))``,
so a pair is the same in any worker, any process of a distributed run, and after a resume.

Crops: the template is the tracker's exemplar window (context 0.5) with a small shift and
scale jitter; the search region is the tracker's search window around the target with
shift up to 64 px and scale up to 0.18 (in 255-crop pixels). Both go through
:func:`siamtrack.geometry.context_crop`, so for zero jitter a training crop *is* the
tracker's crop. Data multiplication for small data (issue 7, each optional): random affine
and elastic warps of the search frame and its mask (stills become pairs), the masked target
pasted onto another training frame (new background, that frame's objects as distractors),
other objects pasted into the search crop as distractors, photometric jitter, blur,
grey-scale and flips. An augmentation whose probability is 0 draws no random numbers, so
turning a new one off keeps the pairs of existing recipes unchanged.

Crop before warp: an affine or elastic warp transforms only the part of the frame the search
crop can reach afterwards (``target_region``), not the whole frame; the crop's padding colour
stays the frame's mean from before the warp.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from siamtrack import geometry as geo
from siamtrack.train.datasets import FrameCache, Track, mask_box


@dataclass
class AugmentConfig:
    template_shift: float = 4.0
    template_scale: float = 0.05
    search_shift: float = 64.0
    search_scale: float = 0.18
    blur: float = 0.18
    gray: float = 0.25
    flip: float = 0.5
    color: float = 0.4  # strength of brightness/contrast/saturation jitter
    affine: float = 0.3  # probability of a random affine warp of the search frame
    affine_rotate: float = 20.0
    affine_shear: float = 0.15
    distractor: float = 0.25  # probability of pasting another object into the search crop
    elastic: float = 0.0  # probability of a smooth elastic warp of the search frame (masked targets)
    elastic_strength: float = 0.06  # displacement standard deviation, as a fraction of the target size
    paste: float = 0.0  # probability of moving the masked target onto another frame for the search image
    occluder: float = 0.0  # probability of pasting another object over part of the target


@dataclass
class DatasetSpec:
    """A dataset in the mix: its tracks, sampling weight and frame range."""

    name: str
    tracks: list[Track]
    weight: float = 1.0
    frame_range: int = 100
    has_masks: bool = field(init=False)

    def __post_init__(self) -> None:
        self.tracks = [t for t in self.tracks if t.valid.size]
        self.has_masks = any(t.has_masks for t in self.tracks)


@dataclass
class Pair:
    template: np.ndarray  # 127x127x3 uint8 BGR
    search: np.ndarray  # 255x255x3 uint8 BGR
    box: np.ndarray  # target in the search crop, (x1, y1, x2, y2)
    mask: np.ndarray | None  # 255x255 float32 {0, 1} or None (box-only)
    negative: bool


def _jitter_crop(rng: np.random.Generator, center: np.ndarray, side: float, out: int, shift: float,
                 scale: float) -> tuple[np.ndarray, float]:
    """Centre and side of a crop whose target moves by up to ``shift`` output pixels and scales by ``scale``."""
    s = math.exp(rng.uniform(-scale, scale)) if scale else 1.0
    new_side = side * s
    px = new_side / out
    d = rng.uniform(-shift, shift, size=2) * px if shift else np.zeros(2)
    return center + d, new_side


def _box_in_crop(box_xywh: np.ndarray, center: np.ndarray, side: float, out: int) -> np.ndarray:
    """Map a frame box into crop pixels, using the crop's exact (rounded) origin."""
    s = int(round(side))
    x0, y0 = geo.crop_origin(center[0], s), geo.crop_origin(center[1], s)
    k = out / s
    x, y, w, h = box_xywh
    return np.array([(x - x0) * k, (y - y0) * k, (x + w - x0) * k, (y + h - y0) * k], dtype=np.float32)


REGION = 2.5  # half side of the region a warp needs, in search-window sides of the target (see below)


def target_region(image: np.ndarray, mask: np.ndarray | None, box: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The part of a frame that a search crop after a warp can show, in its own coordinates.

    After a warp (scale up to e^0.15, rotation 20 degrees, shear 0.15 about the target) and the
    crop jitter (scale e^0.18, shift a quarter side), the crop reaches at most about 2.2 search
    windows of the unwarped target from its centre; ``REGION`` leaves a margin. Where the region
    meets the frame's edge it stops there, so reflected borders are the frame's own.
    """
    center, size = geo.xywh_to_center(box)
    half = REGION * geo.search_side(size)
    h, w = image.shape[:2]
    x0, y0 = max(int(center[0] - half), 0), max(int(center[1] - half), 0)
    x1, y1 = min(int(math.ceil(center[0] + half)), w), min(int(math.ceil(center[1] + half)), h)
    if (x0, y0, x1, y1) == (0, 0, w, h):
        return image, mask, box
    moved = np.array([box[0] - x0, box[1] - y0, box[2], box[3]], dtype=np.float64)
    return image[y0:y1, x0:x1], None if mask is None else mask[y0:y1, x0:x1], moved


def random_affine(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray | None, box: np.ndarray,
                  cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Rotate/scale/shear a frame about the target centre; the box follows the mask (or the corners)."""
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), rng.uniform(-cfg.affine_rotate, cfg.affine_rotate),
                                math.exp(rng.uniform(-0.15, 0.15)))
    m[0, 1] += rng.uniform(-cfg.affine_shear, cfg.affine_shear)
    h, w = image.shape[:2]
    warped = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if mask is not None:
        wmask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
        mb = mask_box(wmask)
        if mb is not None:
            return warped, wmask, np.asarray(mb)
        return image, mask, box
    corners = np.array([[box[0], box[1]], [box[0] + box[2], box[1]], [box[0], box[1] + box[3]],
                        [box[0] + box[2], box[1] + box[3]]])
    pts = corners @ m[:, :2].T + m[:, 2]
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return warped, None, np.array([x0, y0, x1 - x0, y1 - y0])


def elastic_warp(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, box: np.ndarray,
                 strength: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bend a frame and its mask with a smooth random displacement field (a new shape of the
    same object); the box is re-read from the warped mask."""
    h, w = image.shape[:2]
    amp = strength * max(box[2], box[3])
    coarse = rng.normal(0.0, amp, size=(2, 4, 4)).astype(np.float32)
    dx = cv2.resize(coarse[0], (w, h), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(coarse[1], (w, h), interpolation=cv2.INTER_CUBIC)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + dx, gy + dy
    warped = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    wmask = cv2.remap(mask, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mb = mask_box(wmask)
    if mb is None:
        return image, mask, box
    return warped, wmask, np.asarray(mb)


def photometric(rng: np.random.Generator, image: np.ndarray, cfg: AugmentConfig, gray: bool) -> np.ndarray:
    """Colour jitter, then optional grey-scale (decided per pair so template and search agree)."""
    img = image.astype(np.float32)
    if cfg.color:
        img = img * (1 + rng.uniform(-cfg.color, cfg.color)) + rng.uniform(-32, 32) * cfg.color
        mean = img.mean(axis=(0, 1), keepdims=True)
        img = (img - mean) * (1 + rng.uniform(-cfg.color, cfg.color)) + mean
        grey = img.mean(axis=2, keepdims=True)
        img = (img - grey) * (1 + rng.uniform(-cfg.color, cfg.color)) + grey
    if gray:
        img = np.repeat(img @ np.array([[0.114], [0.587], [0.299]], dtype=np.float32), 3, axis=2)
    return np.clip(img, 0, 255).astype(np.uint8)


def motion_blur(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    k = int(rng.integers(2, 5)) * 2 + 1
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2] = 1.0 / k
    rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (k, k))
    kernel /= max(kernel.sum(), 1e-6)
    return cv2.filter2D(image, -1, kernel)


class PairSampler:
    """Draws pairs from a weighted mix of datasets; ``pair(i)`` is a pure function of (seed, i)."""

    def __init__(self, specs: list[DatasetSpec], *, neg_prob: float = 0.2, augment: AugmentConfig | None = None,
                 seed: int = 0, cache_bytes: int = 1 << 30,
                 stages: Sequence[tuple[int, AugmentConfig]] = ()) -> None:
        """``stages``: (first pair index, augmentation) pairs that replace ``augment`` from that pair on."""
        self.specs = [s for s in specs if s.tracks]
        if not self.specs:
            raise ValueError("no usable tracks in the training data")
        w = np.array([s.weight for s in self.specs], dtype=np.float64)
        self.weights = w / w.sum()
        self.neg_prob = neg_prob
        self.aug = augment or AugmentConfig()
        self.stages = sorted(stages, key=lambda s: s[0])
        self.seed = seed
        self.cache = FrameCache(cache_bytes)
        self._masked = [(s, t) for s in self.specs if s.has_masks for t in s.tracks if t.has_masks]
        self._several_tracks = sum(len(s.tracks) for s in self.specs) > 1

    def _pick(self, rng: np.random.Generator) -> tuple[DatasetSpec, Track]:
        spec = self.specs[int(rng.choice(len(self.specs), p=self.weights))]
        return spec, spec.tracks[int(rng.integers(len(spec.tracks)))]

    def _frame(self, track: Track, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        return self.cache.frame(track.frames[index]), self.cache.mask(track, index), track.boxes[index]

    def pair(self, index: int) -> Pair:
        rng = np.random.default_rng((self.seed, index))
        aug = next((a for first, a in reversed(self.stages) if index >= first), self.aug)
        spec, track = self._pick(rng)
        valid = track.valid
        t_idx = int(valid[rng.integers(valid.size)])
        negative = rng.random() < self.neg_prob
        if negative:
            _, s_track = self._pick(rng)
            while s_track is track and self._several_tracks:  # redrawn only then: other pairs stay as they were
                _, s_track = self._pick(rng)
            s_idx = int(s_track.valid[rng.integers(s_track.valid.size)])
        else:
            s_track = track
            near = valid[np.abs(valid - t_idx) <= spec.frame_range]
            s_idx = int(near[rng.integers(near.size)])

        t_img, _, t_box = self._frame(track, t_idx)
        s_img, s_mask, s_box = self._frame(s_track, s_idx)
        s_avg = None  # the search frame's mean, taken before a warp crops it (target_region)
        if not negative and rng.random() < aug.affine:
            s_avg = s_img.mean(axis=(0, 1))
            s_img, s_mask, s_box = random_affine(rng, *target_region(s_img, s_mask, s_box), aug)
        if not negative and s_mask is not None:
            if aug.paste and rng.random() < aug.paste:
                s_img, s_mask, s_box = self._paste_target(rng, s_img, s_mask, s_box)
                s_avg = None
            if aug.elastic and rng.random() < aug.elastic:
                s_avg = s_img.mean(axis=(0, 1)) if s_avg is None else s_avg
                s_img, s_mask, s_box = elastic_warp(rng, *target_region(s_img, s_mask, s_box),
                                                    aug.elastic_strength)

        t_center, t_size = geo.xywh_to_center(t_box)
        zc, zside = _jitter_crop(rng, t_center, geo.context_size(t_size), geo.EXEMPLAR_SIZE,
                                 aug.template_shift, aug.template_scale)
        avg = t_img.mean(axis=(0, 1))
        template = geo.context_crop(t_img, zc, zside, geo.EXEMPLAR_SIZE, avg)

        s_center, s_size = geo.xywh_to_center(s_box)
        xc, xside = _jitter_crop(rng, s_center, geo.search_side(s_size), geo.INSTANCE_SIZE,
                                 aug.search_shift, aug.search_scale)
        search = geo.context_crop(s_img, xc, xside, geo.INSTANCE_SIZE,
                                  s_img.mean(axis=(0, 1)) if s_avg is None else s_avg)
        box = _box_in_crop(s_box, xc, xside, geo.INSTANCE_SIZE)
        mask = None
        if s_mask is not None and not negative:
            mask = (geo.context_crop(s_mask, xc, xside, geo.INSTANCE_SIZE, 0) > 127).astype(np.float32)

        if self._masked and rng.random() < aug.distractor:
            search, mask = self._paste_distractor(rng, search, mask)
        if self._masked and aug.occluder and not negative and mask is not None and rng.random() < aug.occluder:
            hidden, hidden_mask = self._paste_distractor(rng, search, mask, over=box)
            if hidden_mask.sum() >= 0.4 * mask.sum():  # a target still there to track and segment
                search, mask = hidden, hidden_mask
        gray = rng.random() < aug.gray
        template = photometric(rng, template, aug, gray)
        search = photometric(rng, search, aug, gray)
        if rng.random() < aug.blur:
            search = motion_blur(rng, search)
        if rng.random() < aug.flip:
            template, search = template[:, ::-1].copy(), search[:, ::-1].copy()
            if mask is not None:
                mask = mask[:, ::-1].copy()
            w = geo.INSTANCE_SIZE - 1
            box = np.array([w - box[2], box[1], w - box[0], box[3]], dtype=np.float32)
        return Pair(template, search, box, mask, negative)

    def _paste_target(self, rng: np.random.Generator, image: np.ndarray, mask: np.ndarray,
                      box: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cut the masked target out and paste it, rescaled, at a random place of another
        training frame: the same object on a new background, among that frame's objects."""
        _, track = self._pick(rng)
        bg = self.cache.frame(track.frames[int(track.valid[rng.integers(track.valid.size)])])
        bh, bw = bg.shape[:2]
        obj = mask_box(mask)
        if obj is None:
            return image, mask, box
        x, y, w, h = (int(v) for v in obj)
        scale = min(math.exp(rng.uniform(-0.3, 0.3)), 0.8 * bw / w, 0.8 * bh / h)
        nw, nh = max(int(round(w * scale)), 2), max(int(round(h * scale)), 2)
        patch = cv2.resize(image[y:y + h, x:x + w], (nw, nh), interpolation=cv2.INTER_LINEAR)
        alpha = cv2.resize(mask[y:y + h, x:x + w], (nw, nh), interpolation=cv2.INTER_NEAREST)
        x0, y0 = int(rng.integers(0, bw - nw + 1)), int(rng.integers(0, bh - nh + 1))
        out = bg.copy()
        region = out[y0:y0 + nh, x0:x0 + nw]
        region[alpha > 127] = patch[alpha > 127]
        new_mask = np.zeros((bh, bw), np.uint8)
        new_mask[y0:y0 + nh, x0:x0 + nw] = alpha
        new_box = mask_box(new_mask)
        if new_box is None:
            return image, mask, box
        return out, new_mask, np.asarray(new_box)

    def _paste_distractor(self, rng: np.random.Generator, search: np.ndarray, mask: np.ndarray | None,
                          over: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Paste another object (with its mask) at a random place; it hides what it covers.

        ``over`` (a box x1, y1, x2, y2 in the crop): the object's centre lands on that box's edge
        region, so it occludes part of the target and the mask must leave the hidden part out.
        """
        _, track = self._masked[int(rng.integers(len(self._masked)))]
        idx = int(track.valid[rng.integers(track.valid.size)])
        img, omask, box = self._frame(track, idx)
        if omask is None:
            return search, mask
        center, size = geo.xywh_to_center(box)
        side = max(size) * math.exp(rng.uniform(-0.3, 0.5))
        if over is None:
            out = int(rng.integers(48, 128))
        else:  # about half the target's size: it hides a part, not the whole
            out = int(np.clip(max(over[2] - over[0], over[3] - over[1]) * rng.uniform(0.4, 0.8), 16, 128))
        patch = geo.context_crop(img, center, side, out, img.mean(axis=(0, 1)))
        alpha = geo.context_crop(omask, center, side, out, 0).astype(np.float32)[..., None] / 255.0
        if over is None:
            x0, y0 = (int(v) for v in rng.integers(0, geo.INSTANCE_SIZE - out, size=2))
        else:  # centred on a point of the target box's outline
            if rng.random() < 0.5:
                cx, cy = over[int(rng.integers(2)) * 2], rng.uniform(over[1], over[3])
            else:
                cx, cy = rng.uniform(over[0], over[2]), over[1 + int(rng.integers(2)) * 2]
            x0 = int(np.clip(cx - out / 2, 0, geo.INSTANCE_SIZE - out - 1))
            y0 = int(np.clip(cy - out / 2, 0, geo.INSTANCE_SIZE - out - 1))
        region = search[y0:y0 + out, x0:x0 + out].astype(np.float32)
        search = search.copy()
        search[y0:y0 + out, x0:x0 + out] = (alpha * patch + (1 - alpha) * region).astype(np.uint8)
        if mask is not None:
            mask = mask.copy()
            mask[y0:y0 + out, x0:x0 + out] *= (alpha[..., 0] < 0.5)
        return search, mask
