"""Pure geometry of the SiamMask tracker, shared by the tracker and by training.

Every function mirrors one step of the official tracker (foolwood/SiamMask,
``tools/test.py``) closely enough to give bit-identical crops, anchors, windows and
integer decisions; the dtype flow (float32 network outputs, float64 state) is kept
on purpose because the argmax over 3125 candidates must not change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

EXEMPLAR_SIZE = 127
INSTANCE_SIZE = 255
STRIDE = 8
BASE_SIZE = 8
SCORE_SIZE = (INSTANCE_SIZE - EXEMPLAR_SIZE) // STRIDE + 1 + BASE_SIZE  # 25
MASK_SIZE = 127
RATIOS = (0.33, 0.5, 1.0, 2.0, 3.0)
SCALES = (8,)
MIN_SIZE = 10.0


def context_size(size_wh: Sequence[float], context: float = 0.5) -> float:
    """Side of the square context window around a target: sqrt((w+p)(h+p)), p = context*(w+h)."""
    w, h = float(size_wh[0]), float(size_wh[1])
    p = context * (w + h)
    return math.sqrt((w + p) * (h + p))


def exemplar_side(size_wh: Sequence[float], context: float = 0.5) -> int:
    """Template crop side in frame pixels, rounded half-to-even as the official init does."""
    return round(context_size(size_wh, context))


def search_side(size_wh: Sequence[float], context: float = 0.5) -> float:
    """Unrounded search-region side: the context window grown so 127 maps to 255."""
    s_z = context_size(size_wh, context)
    scale = EXEMPLAR_SIZE / s_z
    pad = (INSTANCE_SIZE - EXEMPLAR_SIZE) / 2 / scale
    return s_z + 2 * pad


def crop_origin(center: float, side: int, half_up: bool = False, *, truncate: bool = False) -> int:
    """Left/top pixel of a ``side``-wide window centred at ``center``.

    The official tracker rounds half to even (Python ``round``); PySOT rounds half up;
    OpenCV's ``TrackerNano`` (``truncate``) cuts the centre to an integer first and subtracts
    ``(side + 1) // 2``.
    """
    if truncate:
        return int(center) - (side + 1) // 2
    v = center - (side + 1) / 2
    return int(math.floor(v + 0.5)) if half_up else int(round(v))


def context_crop(
    image: np.ndarray,
    center_xy: Sequence[float],
    crop_side: float,
    out_size: int,
    pad_color: np.ndarray | Sequence[float],
    half_up: bool = False,
    *,
    truncate: bool = False,
) -> np.ndarray:
    """Square crop of ``round(crop_side)`` pixels at ``center_xy``, padded, resized to ``out_size``.

    Pixels outside the frame take ``pad_color`` truncated to uint8 (the official code
    assigns the float mean into a uint8 canvas). Training crops single-channel masks with
    the same function (``pad_color`` 0). Only the window is materialised, not
    the whole padded frame; the result is identical.
    """
    side = int(round(crop_side))
    if side < 1:
        raise ValueError(f"crop side must be >= 1, got {crop_side}")
    x0 = crop_origin(float(center_xy[0]), side, half_up, truncate=truncate)
    y0 = crop_origin(float(center_xy[1]), side, half_up, truncate=truncate)
    h, w = image.shape[:2]
    ix0, iy0 = max(x0, 0), max(y0, 0)
    ix1, iy1 = min(x0 + side, w), min(y0 + side, h)
    if ix0 == x0 and iy0 == y0 and ix1 == x0 + side and iy1 == y0 + side:
        patch = image[y0 : y0 + side, x0 : x0 + side]
    else:
        fill = np.broadcast_to(np.asarray(pad_color, dtype=np.float64).astype(image.dtype), image.shape[2:] or (1,))
        if ix1 > ix0 and iy1 > iy0:  # one C call: far faster than filling a numpy canvas on wide crops
            patch = cv2.copyMakeBorder(image[iy0:iy1, ix0:ix1], iy0 - y0, y0 + side - iy1, ix0 - x0,
                                       x0 + side - ix1, cv2.BORDER_CONSTANT, value=[float(v) for v in fill])
        else:
            patch = np.empty((side, side, *image.shape[2:]), dtype=image.dtype)
            patch[:] = fill if image.ndim == 3 else fill[0]
    if side != out_size:
        patch = cv2.resize(patch, (out_size, out_size))
    return np.ascontiguousarray(patch)


def crop_box(center_xy: Sequence[float], crop_side: float) -> tuple[float, float, int, int]:
    """The search window as (x0, y0, side, side) with the rounded side, as used by warp-back."""
    side = round(crop_side)
    return (float(center_xy[0]) - side / 2, float(center_xy[1]) - side / 2, side, side)


def base_anchors(stride: int = STRIDE, ratios: Sequence[float] = RATIOS,
                 scales: Sequence[int] = SCALES) -> np.ndarray:
    """(A, 4) float32 anchor (cx=0, cy=0, w, h); sizes truncated to integers as the official code."""
    out = []
    area = stride * stride
    for r in ratios:
        ws = int(math.sqrt(area / r))
        hs = int(ws * r)
        for s in scales:
            w, h = ws * s, hs * s
            x1, y1, x2, y2 = np.float32(-w * 0.5), np.float32(-h * 0.5), np.float32(w * 0.5), np.float32(h * 0.5)
            out.append([(x1 + x2) * np.float32(0.5), (y1 + y2) * np.float32(0.5), x2 - x1, y2 - y1])
    return np.asarray(out, dtype=np.float32)


def generate_anchors(score_size: int = SCORE_SIZE, stride: int = STRIDE,
                     ratios: Sequence[float] = RATIOS, scales: Sequence[int] = SCALES) -> np.ndarray:
    """All anchors as (A*S*S, 4) float32 (cx, cy, w, h) in search-crop pixels from its centre.

    Flat index = anchor * S*S + row * S + col; cell centres at ``stride * (col - S//2)``.
    """
    base = base_anchors(stride, ratios, scales)
    n = base.shape[0]
    anchors = np.repeat(base, score_size * score_size, axis=0)
    offsets = (-(score_size // 2) * stride + stride * np.arange(score_size)).astype(np.float32)
    xx, yy = np.meshgrid(offsets, offsets)
    anchors[:, 0] = np.tile(xx.ravel(), n)
    anchors[:, 1] = np.tile(yy.ravel(), n)
    return anchors


def cosine_window(score_size: int = SCORE_SIZE, anchor_num: int = len(RATIOS) * len(SCALES)) -> np.ndarray:
    """Hanning window over the response map, tiled over the anchors (float64)."""
    win = np.outer(np.hanning(score_size), np.hanning(score_size))
    return np.tile(win.ravel(), anchor_num)


def decision_margin(pscore: np.ndarray, cells: int = SCORE_SIZE * SCORE_SIZE) -> float:
    """How far the chosen cell's penalised score is ahead of the best other cell's.

    ``pscore`` is flattened (anchor, row, col), ``cells`` entries per anchor; the anchors of one
    cell are one decision (they share the refine window). A map whose maximum is not finite, or
    with one cell, has an infinite margin: there is nothing to flip to.
    """
    best = int(np.argmax(pscore))
    others = (np.arange(pscore.size) % cells) != best % cells
    if not np.isfinite(pscore[best]) or not others.any():
        return math.inf
    return float(pscore[best] - pscore[others].max())


def decode_boxes(delta: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Apply (dx, dy, dw, dh) of shape (4, N) to anchors (N, 4): boxes (4, N) cx, cy, w, h.

    float32 in, float32 out (the official decode operates on the float32 network output).
    """
    out = np.empty_like(delta)
    out[0] = delta[0] * anchors[:, 2] + anchors[:, 0]
    out[1] = delta[1] * anchors[:, 3] + anchors[:, 1]
    out[2] = np.exp(delta[2]) * anchors[:, 2]
    out[3] = np.exp(delta[3]) * anchors[:, 3]
    return out


def _change(r: np.ndarray) -> np.ndarray:
    return np.maximum(r, 1.0 / r)


def _padded_size(w, h):
    pad = (w + h) * 0.5
    return np.sqrt((w + pad) * (h + pad))


def size_penalty(boxes: np.ndarray, target_sz_in_crop: np.ndarray, penalty_k: float,
                 target_ratio: float | None = None) -> np.ndarray:
    """Penalty for scale and aspect-ratio change of each candidate against the current target.

    ``target_ratio`` defaults to w/h of ``target_sz_in_crop`` (official); PySOT divides the
    unscaled size, which can differ in the last bit.
    """
    tw, th = np.float64(target_sz_in_crop[0]), np.float64(target_sz_in_crop[1])
    ratio = tw / th if target_ratio is None else np.float64(target_ratio)
    s_c = _change(_padded_size(boxes[2], boxes[3]) / _padded_size(tw, th))
    r_c = _change(ratio / (boxes[2] / boxes[3]))
    return np.exp(-(r_c * s_c - 1) * penalty_k)


def mask_window(box: Sequence[float], row: int, col: int, instance_size: int = INSTANCE_SIZE,
                exemplar_size: int = EXEMPLAR_SIZE, stride: int = STRIDE,
                base_size: int = BASE_SIZE) -> tuple[float, float, float, float]:
    """Frame-space (x0, y0, w, h) of the 127x127 mask predicted at response cell (row, col).

    ``box`` is the search crop (x0, y0, side, side). The window of cell (r, c) covers
    search-crop pixels [8c - 32, 8c + 95) horizontally (same for rows).
    """
    s = box[2] / instance_size
    return (
        box[0] + (col - base_size / 2) * stride * s,
        box[1] + (row - base_size / 2) * stride * s,
        s * exemplar_size,
        s * exemplar_size,
    )


def mask_mapping(mask_side: int, window: Sequence[float], frame_wh: tuple[int, int]) -> np.ndarray:
    """The 2x3 affine taking pixels of a ``mask_side`` square mask over ``window`` to frame pixels.

    Official mapping: frame pixel = window origin + mask pixel * (window side / (n - 1)) * ...;
    expressed as the affine that maps the mask into a frame-sized canvas.
    """
    out_w, out_h = frame_wh
    s = mask_side / window[2]
    back = (-window[0] * s, -window[1] * s, out_w * s, out_h * s)
    a = (out_w - 1) / back[2]
    b = (out_h - 1) / back[3]
    return np.array([[a, 0, -a * back[0]], [0, b, -b * back[1]]], dtype=np.float64)


def mask_region(mask_side: int, window: Sequence[float], frame_wh: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the frame pixels a warped-back mask can reach (the rest hold the border value).

    Bilinear interpolation reads mask pixels -1 < u < n; two pixels of margin cover OpenCV's
    fixed-point rounding of the mapping. Empty (x1 <= x0) where the window misses the frame.
    """
    m = mask_mapping(mask_side, window, frame_wh).tolist()
    out = []
    for axis, size in ((0, frame_wh[0]), (1, frame_wh[1])):
        scale, shift = m[axis][axis], m[axis][2]
        lo, hi = sorted((shift - scale, shift + scale * mask_side))
        out.append((min(max(math.floor(lo) - 2, 0), size), min(max(math.ceil(hi) + 3, 0), size)))
    (x0, x1), (y0, y1) = out
    return x0, y0, max(x0, x1), max(y0, y1)


def warp_mask_to_frame(mask: np.ndarray, window: Sequence[float], frame_wh: tuple[int, int],
                       border: float = -1.0, region: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Warp a square mask (probabilities) that covers ``window`` back onto the frame (``mask_mapping``).

    ``region`` (x0, y0, x1, y1): warp only those frame pixels, returned as a (y1-y0, x1-x0) array;
    each is what the whole frame's warp holds there (the mapping shifted by the region's origin).
    """
    mapping = mask_mapping(mask.shape[0], window, frame_wh)
    x0, y0, x1, y1 = region if region is not None else (0, 0, *frame_wh)
    if x1 <= x0 or y1 <= y0:
        return np.full((max(y1 - y0, 0), max(x1 - x0, 0)), border, dtype=mask.dtype)
    mapping[:, 2] -= (x0, y0)
    return cv2.warpAffine(mask, mapping, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border)


@dataclass
class RotatedBox:
    """A rotated rectangle: 4 corners plus centre, size and angle (cv2.minAreaRect convention)."""

    points: np.ndarray
    cx: float
    cy: float
    w: float
    h: float
    angle: float

    @classmethod
    def from_points(cls, points: np.ndarray) -> RotatedBox:
        pts = np.asarray(points, dtype=np.float32).reshape(4, 2)
        (cx, cy), (w, h), angle = cv2.minAreaRect(pts)
        return cls(pts.astype(np.float64), float(cx), float(cy), float(w), float(h), float(angle))

    def to_dict(self) -> dict:
        return {
            "points": [[round(float(x), 3), round(float(y), 3)] for x, y in self.points],
            "cx": round(self.cx, 3),
            "cy": round(self.cy, 3),
            "w": round(self.w, 3),
            "h": round(self.h, 3),
            "angle": round(self.angle, 3),
        }


def box_corners(center: Sequence[float], size: Sequence[float]) -> np.ndarray:
    """Corners (4, 2) of an axis-aligned box, clockwise from top-left (official fallback order)."""
    x, y = center[0] - size[0] / 2, center[1] - size[1] / 2
    w, h = size[0], size[1]
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)


def rotated_box_from_mask(binary: np.ndarray, fallback_center: Sequence[float],
                          fallback_size: Sequence[float], min_area: float = 100.0,
                          offset: tuple[int, int] = (0, 0)) -> tuple[RotatedBox, str]:
    """Minimum-area rectangle of the largest external contour, or the state box.

    The official tracker uses the contour only when its area exceeds 100 px; otherwise
    it falls back to the (unclipped) target box. Returns the box and its source. ``offset``:
    where ``binary``'s pixel (0, 0) is in the frame (a region of it, zero around it).
    """
    contours = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE, offset=offset)[-2]
    if contours:
        areas = [cv2.contourArea(c) for c in contours]
        best = int(np.argmax(areas))
        if areas[best] > min_area:
            rect = cv2.minAreaRect(contours[best].reshape(-1, 2))
            pts = cv2.boxPoints(rect).astype(np.float64)
            (cx, cy), (w, h), angle = rect
            return RotatedBox(pts, float(cx), float(cy), float(w), float(h), float(angle)), "mask"
    return state_box(fallback_center, fallback_size), "box"


def state_box(center: Sequence[float], size: Sequence[float]) -> RotatedBox:
    """The axis-aligned box of a tracker state as a rotated box (angle 0)."""
    return RotatedBox(box_corners(center, size), float(center[0]), float(center[1]), float(size[0]),
                      float(size[1]), 0.0)


def clip_state(center: np.ndarray, size: np.ndarray, frame_wh: tuple[int, int],
               min_size: float = MIN_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Keep the centre inside the frame and the size within [min_size, frame size]."""
    w, h = frame_wh
    c = np.array([max(0.0, min(w, center[0])), max(0.0, min(h, center[1]))], dtype=np.float64)
    s = np.array([max(min_size, min(w, size[0])), max(min_size, min(h, size[1]))], dtype=np.float64)
    return c, s


def xywh_to_center(box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(x, y, w, h) -> centre (x + w/2, y + h/2) and size, float64, as the official demo."""
    x, y, w, h = (float(v) for v in box)
    return np.array([x + w / 2, y + h / 2]), np.array([w, h])


def center_to_xywh(center: Sequence[float], size: Sequence[float]) -> tuple[float, float, float, float]:
    """Centre and size -> (x, y, w, h)."""
    return (float(center[0] - size[0] / 2), float(center[1] - size[1] / 2), float(size[0]), float(size[1]))


def box_mask(shape: tuple[int, int], box: Sequence[float]) -> np.ndarray:
    """An (x, y, w, h) box filled as an HxW bool mask (rounded to pixels, clipped to the frame)."""
    mask = np.zeros(shape, dtype=bool)
    x, y, w, h = (int(round(float(v))) for v in box)
    mask[max(y, 0):max(y + h, 0), max(x, 0):max(x + w, 0)] = True
    return mask
