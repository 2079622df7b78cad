"""DAVIS region (J) and boundary (F) measures, defined exactly as the official DAVIS evaluation.

J is the IoU of binary masks (1 when both are empty). F is the F-measure of boundary
pixels matched within a tolerance of ``ceil(0.008 * image diagonal)`` pixels: boundaries
from the official ``seg2bmap`` (a pixel differs from its right, lower or lower-right
neighbour), dilation with a disk of that radius, precision and recall from the matched
pixels. Statistics per object: mean, recall (fraction > 0.5) and decay (mean of the first
quarter minus the last, over four bins cut as the official code cuts them). The caller
drops the first (given) and last frames before computing them, as the official code does.
"""

from __future__ import annotations

import math
import warnings

import cv2
import numpy as np

BOUND_TH = 0.008


def region_j(gt: np.ndarray, pred: np.ndarray) -> float:
    """Jaccard index of two binary masks; 1.0 when both are empty."""
    gt, pred = gt.astype(bool), pred.astype(bool)
    union = np.count_nonzero(gt | pred)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(gt & pred) / union)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary of a binary mask (the official definition, same image size)."""
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def disk(radius: int) -> np.ndarray:
    """Structuring element: grid points within ``radius`` of the centre (skimage.morphology.disk)."""
    r = int(radius)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return ((xx * xx + yy * yy) <= r * r).astype(np.uint8)


def boundary_f(gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """Boundary F-measure with the DAVIS tolerance."""
    bound_pix = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*gt.shape[:2]))
    fg_b = seg2bmap(pred)
    gt_b = seg2bmap(gt)
    se = disk(bound_pix)
    fg_dil = cv2.dilate(fg_b.astype(np.uint8), se)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), se)
    n_fg, n_gt = np.count_nonzero(fg_b), np.count_nonzero(gt_b)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = np.count_nonzero(fg_b & (gt_dil > 0)) / n_fg
        recall = np.count_nonzero(gt_b & (fg_dil > 0)) / n_gt
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def statistics(values: list[float] | np.ndarray) -> dict[str, float]:
    """Mean, recall (> 0.5) and decay of per-frame values, as the official ``db_statistics``."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return {"mean": float("nan"), "recall": float("nan"), "decay": float("nan")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = float(np.nanmean(x))
        recall = float(np.nanmean(x > 0.5))
        # Official bin edges, including its uint8 cast of the indices.
        ids = (np.round(np.linspace(1, len(x), 5) + 1e-10) - 1).astype(np.uint8)
        bins = [x[ids[i]:ids[i + 1] + 1] for i in range(4)]
        decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return {"mean": mean, "recall": recall, "decay": decay}
