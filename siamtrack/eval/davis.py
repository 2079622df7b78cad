"""DAVIS region (J) and boundary (F) measures, as the official DAVIS evaluation defines them.

J is the IoU of two binary masks, 1 when both are empty. F is the F-measure of boundary
pixels matched within ``ceil(0.008 * image diagonal)`` pixels: one-pixel boundaries as
``seg2bmap`` draws them (a pixel differs from its right, lower or lower-right neighbour),
dilated by a disk of that radius, precision and recall counted on the matched pixels.
Per object, the per-frame values give mean, recall (fraction > 0.5) and decay (first
quarter minus last quarter, bins cut as the official ``db_statistics`` cuts them, for any length).
Callers leave out the first (given) and last frames, as the official code does.

Label images follow the toolkits: DAVIS-2016 masks are 0/255 (one object); DAVIS-2017
annotations are palette indices 1..K with 255 as "void", which the semi-supervised
evaluation counts as background.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import cv2
import numpy as np

BOUND_TH = 0.008
VOID = 255


def region_j(gt: np.ndarray, pred: np.ndarray) -> float:
    """Jaccard index of two binary masks; 1.0 when both are empty (nothing to miss)."""
    gt, pred = gt.astype(bool), pred.astype(bool)
    union = np.count_nonzero(gt | pred)
    if union == 0:
        return 1.0
    return np.count_nonzero(gt & pred) / union


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel boundary map of a binary mask, offset half a pixel towards the origin."""
    seg = seg.astype(bool)
    right = np.zeros_like(seg)
    below = np.zeros_like(seg)
    diag = np.zeros_like(seg)
    right[:, :-1] = seg[:, 1:]
    below[:-1, :] = seg[1:, :]
    diag[:-1, :-1] = seg[1:, 1:]
    bmap = (seg ^ right) | (seg ^ below) | (seg ^ diag)
    # The last row and column only compare along the image edge, as the official code does.
    bmap[-1, :] = seg[-1, :] ^ right[-1, :]
    bmap[:, -1] = seg[:, -1] ^ below[:, -1]
    bmap[-1, -1] = False
    return bmap


def disk(radius: int) -> np.ndarray:
    """Grid points within ``radius`` of the centre (the structuring element skimage calls disk)."""
    r = int(radius)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (xx * xx + yy * yy <= r * r).astype(np.uint8)


def boundary_tolerance(shape: Sequence[int], bound_th: float = BOUND_TH) -> int:
    """Matching radius in pixels: ``bound_th`` itself if >= 1, else that fraction of the diagonal."""
    if bound_th >= 1:
        return int(bound_th)
    return math.ceil(bound_th * math.hypot(shape[0], shape[1]))


def boundary_f(gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """Boundary F-measure with the DAVIS tolerance (1.0 when both masks are empty)."""
    se = disk(boundary_tolerance(gt.shape[:2], bound_th))
    pred_b, gt_b = seg2bmap(pred), seg2bmap(gt)
    n_pred, n_gt = np.count_nonzero(pred_b), np.count_nonzero(gt_b)
    if n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    elif n_pred == 0:
        precision, recall = 1.0, 0.0
    elif n_gt == 0:
        precision, recall = 0.0, 1.0
    else:
        gt_dil = cv2.dilate(gt_b.astype(np.uint8), se) > 0
        pred_dil = cv2.dilate(pred_b.astype(np.uint8), se) > 0
        precision = np.count_nonzero(pred_b & gt_dil) / n_pred
        recall = np.count_nonzero(gt_b & pred_dil) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def statistics(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Mean, recall (> 0.5) and decay of per-frame values, as the official ``db_statistics``.

    The decay bins are cut at ``round(linspace(1, n, 5)) - 1``, as the official code cuts them.
    That code casts the cut indices to uint8, which is exact up to 256 values and wraps beyond
    (empty bins, a NaN decay); here they stay integers of any size, so every length is binned
    the same way and the figures equal the official ones wherever those are defined.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("statistics need at least one value")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(x)
        recall = np.nanmean(x > 0.5)
        edges = (np.round(np.linspace(1, len(x), 5) + 1e-10) - 1).astype(np.int64)
        bins = [x[edges[i]:edges[i + 1] + 1] for i in range(4)]
        decay = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return {"mean": float(mean), "recall": float(recall), "decay": float(decay)}


def is_binary_label(label: np.ndarray) -> bool:
    """A DAVIS-2016 style mask: only 0 and 255 (one object), as opposed to palette indices."""
    return bool(np.isin(label, (0, 255)).all() and (label == 255).any())


def label_object_ids(first_label: np.ndarray) -> list[int]:
    """Objects of a sequence from its first annotation: 1 for a binary mask, else 1..max index.

    As in the official DAVIS-2017 code, the count is the largest index of the first frame
    (void excluded), so an index absent there still counts as an object.
    """
    if is_binary_label(first_label):
        return [1]
    values = first_label[first_label != VOID]
    top = int(values.max()) if values.size else 0
    return list(range(1, top + 1))


def label_object_mask(label: np.ndarray, obj_id: int, binary: bool) -> np.ndarray:
    """Mask of ``obj_id`` in a label image; void pixels are background (semi-supervised rule)."""
    if binary:
        return label > 0 if obj_id == 1 else np.zeros(label.shape, dtype=bool)
    return label == obj_id


def score_object(gts: Sequence[np.ndarray], preds: Sequence[np.ndarray],
                 bound_th: float = BOUND_TH) -> dict[str, object]:
    """J and F of one object over the scored frames (the caller passes frames 1..N-2)."""
    if len(gts) != len(preds):
        raise ValueError(f"{len(gts)} ground-truth masks but {len(preds)} predictions")
    j = [region_j(g, p) for g, p in zip(gts, preds, strict=True)]
    f = [boundary_f(g, p, bound_th) for g, p in zip(gts, preds, strict=True)]
    return {"J": statistics(j), "F": statistics(f), "J_per_frame": j, "F_per_frame": f}
