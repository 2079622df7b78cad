"""Training targets per head type: score labels, box targets, mask cells.

Anchors (SiamMask's RPN) are :func:`siamtrack.geometry.generate_anchors` moved to absolute
search-crop pixels (the crop centre is pixel 127), so a positive label means exactly "the
tracker would decode this anchor near the target". Points (NanoTrack's anchor-free head) are
:func:`siamtrack.decoders.point_grid` in the same pixels. Mask targets of cell (r, c) are the
search-crop mask over the 127 pixels centred on the cell's point, ``[s*c + 64 - s*(S//2), ...)``
for stride ``s`` and map side ``S`` (SiamMask: ``[8c - 32, 8c + 95)``): the window that the
head's decoder (``mask_window``) warps back at test time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from siamtrack import geometry as geo
from siamtrack.decoders import point_grid

CENTER = geo.INSTANCE_SIZE // 2  # 127
MASK_PAD = geo.BASE_SIZE // 2 * geo.STRIDE  # 32


def anchors_xyxy() -> np.ndarray:
    """(A*S*S, 4) anchors as x1, y1, x2, y2 in search-crop pixels."""
    a = geo.generate_anchors().astype(np.float64)
    cx, cy = a[:, 0] + CENTER, a[:, 1] + CENTER
    return np.stack([cx - a[:, 2] / 2, cy - a[:, 3] / 2, cx + a[:, 2] / 2, cy + a[:, 3] / 2], axis=1)


def iou_with(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of each (x1, y1, x2, y2) row with one box."""
    ix = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    inter = ix * iy
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + (box[2] - box[0]) * (box[3] - box[1]) - inter)


@dataclass
class AnchorTargets:
    labels: np.ndarray  # (A*S*S,) int64: 1 positive, 0 negative, -1 ignored
    deltas: np.ndarray  # (4, A*S*S) float32
    delta_weight: np.ndarray  # (A*S*S,) float32, 1/num_pos at positives
    mask_cells: np.ndarray  # (S*S,) bool: cells with a positive anchor


def anchor_targets(box: np.ndarray, negative: bool, rng: np.random.Generator, *, pos_thr: float = 0.6,
                   neg_thr: float = 0.3, max_pos: int = 16, total: int = 64) -> AnchorTargets:
    """Label anchors by IoU with the target and sample at most ``max_pos`` of ``total``."""
    anchors = anchors_xyxy()
    n = anchors.shape[0]
    cells = geo.SCORE_SIZE * geo.SCORE_SIZE
    labels = np.full(n, -1, dtype=np.int64)
    deltas = np.zeros((4, n), dtype=np.float32)
    weight = np.zeros(n, dtype=np.float32)
    if negative:
        # Another object's crop: only the centre region, where a distractor would be chosen, is negative.
        grid = np.arange(n) % cells
        r, c = grid // geo.SCORE_SIZE, grid % geo.SCORE_SIZE
        mid = geo.SCORE_SIZE // 2
        near = np.flatnonzero((np.abs(r - mid) <= 3) & (np.abs(c - mid) <= 3))
        labels[rng.choice(near, size=min(max_pos, near.size), replace=False)] = 0
        return AnchorTargets(labels, deltas, weight, np.zeros(cells, dtype=bool))
    overlap = iou_with(anchors, box)
    pos = np.flatnonzero(overlap > pos_thr)
    neg = np.flatnonzero(overlap < neg_thr)
    if pos.size > max_pos:
        pos = rng.choice(pos, size=max_pos, replace=False)
    neg = rng.choice(neg, size=min(total - pos.size, neg.size), replace=False)
    labels[neg] = 0
    labels[pos] = 1
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + aw / 2, anchors[:, 1] + ah / 2
    bw, bh = box[2] - box[0], box[3] - box[1]
    bx, by = box[0] + bw / 2, box[1] + bh / 2
    deltas[0] = (bx - ax) / aw
    deltas[1] = (by - ay) / ah
    deltas[2] = np.log(max(bw, 1e-3) / aw)
    deltas[3] = np.log(max(bh, 1e-3) / ah)
    if pos.size:
        weight[pos] = 1.0 / pos.size
    mask_cells = np.zeros(cells, dtype=bool)
    mask_cells[pos % cells] = True
    return AnchorTargets(labels, deltas, weight, mask_cells)


def point_targets(box: np.ndarray, negative: bool, rng: np.random.Generator, *, score_size: int = 15,
                  stride: int = 16, max_pos: int = 16, total: int = 64) -> AnchorTargets:
    """Label points as SiamBAN/NanoTrack do: positive inside the ellipse of half the target's axes,
    negative outside the target's own ellipse; box targets are l/t/r/b distances in crop pixels.

    A target too small for any point inside its inner ellipse gets its nearest point as the one
    positive, so every positive pair trains the mask at the point the tracker would choose.
    """
    pts = point_grid(score_size, stride).astype(np.float64) + CENTER
    n = pts.shape[0]
    labels = np.full(n, -1, dtype=np.int64)
    deltas = np.zeros((4, n), dtype=np.float32)
    weight = np.zeros(n, dtype=np.float32)
    if negative:
        mid = score_size // 2
        r, c = np.arange(n) // score_size, np.arange(n) % score_size
        near = np.flatnonzero((np.abs(r - mid) <= 3) & (np.abs(c - mid) <= 3))
        labels[rng.choice(near, size=min(max_pos, near.size), replace=False)] = 0
        return AnchorTargets(labels, deltas, weight, np.zeros(n, dtype=bool))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    w, h = max(box[2] - box[0], 1e-3), max(box[3] - box[1], 1e-3)
    dist = ((pts[:, 0] - cx) / w) ** 2 + ((pts[:, 1] - cy) / h) ** 2  # 0.25: on the target's own ellipse
    pos = np.flatnonzero(dist < 0.0625)
    if pos.size == 0:
        pos = np.array([int(np.argmin(dist))])
    neg = np.flatnonzero(dist > 0.25)
    if pos.size > max_pos:
        pos = rng.choice(pos, size=max_pos, replace=False)
    neg = rng.choice(neg, size=min(total - pos.size, neg.size), replace=False)
    labels[neg] = 0
    labels[pos] = 1
    deltas[:] = np.stack([pts[:, 0] - box[0], pts[:, 1] - box[1], box[2] - pts[:, 0], box[3] - pts[:, 1]])
    weight[pos] = 1.0 / pos.size
    mask_cells = np.zeros(n, dtype=bool)
    mask_cells[pos] = True
    return AnchorTargets(labels, deltas, weight, mask_cells)


def grid_of(model: Any) -> tuple[int, int]:
    """(map side, stride) of a network's response maps (SiamMask networks: 25, 8)."""
    return int(getattr(model, "score_size", geo.SCORE_SIZE)), int(getattr(model, "stride", geo.STRIDE))


def targets_for(model: Any) -> Callable[[np.ndarray, bool, np.random.Generator], AnchorTargets]:
    """The target function of the head type ``model`` declares (``head_type``, as ``decoder_for``)."""
    if getattr(model, "head_type", "anchors") == "points":
        size, stride = grid_of(model)
        return lambda box, negative, rng: point_targets(box, negative, rng, score_size=size, stride=stride)
    return anchor_targets


def mask_windows(masks: torch.Tensor, batch_idx: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                 score_size: int = geo.SCORE_SIZE, stride: int = geo.STRIDE) -> torch.Tensor:
    """The 127x127 mask targets of cells (batch_idx, row, col) from (B, 255, 255) search-crop masks."""
    pad = stride * (score_size // 2) - (geo.INSTANCE_SIZE - geo.EXEMPLAR_SIZE) // 2  # SiamMask: MASK_PAD
    padded = F.pad(masks, [pad, pad, pad, pad])
    size, step = geo.MASK_SIZE, stride
    return torch.stack([padded[b, step * r: step * r + size, step * c: step * c + size]
                        for b, r, c in zip(batch_idx.tolist(), rows.tolist(), cols.tolist(), strict=True)])
