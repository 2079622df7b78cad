"""Box benchmarks: one-pass evaluation (success AUC, precision at 20 px) and the VOT restart protocol.

Overlaps are exact polygon IoU (convex clipping), so rotated ground truth (VOT polygons)
and rotated predictions are compared as what they are; axis-aligned boxes are polygons too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

THRESHOLDS = np.linspace(0, 1, 21)  # OTB's success-plot thresholds 0, 0.05, ..., 1
BURN_IN = 10  # VOT: frames after each (re-)initialisation left out of accuracy
SKIP = 5  # VOT: frames skipped after a failure before re-initialising


def box_polygon(box: Sequence[float]) -> np.ndarray:
    """(x, y, w, h) or 8 numbers -> (4, 2) polygon."""
    v = np.asarray(box, dtype=np.float64).ravel()
    if v.size == 8:
        return v.reshape(4, 2)
    x, y, w, h = v
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])


def polygon_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (convex hulls of) polygons."""
    pa = cv2.convexHull(np.asarray(a, np.float32).reshape(-1, 2))
    pb = cv2.convexHull(np.asarray(b, np.float32).reshape(-1, 2))
    area_a, area_b = cv2.contourArea(pa), cv2.contourArea(pb)
    if area_a <= 0 or area_b <= 0:
        return 0.0
    inter, _ = cv2.intersectConvexConvex(pa, pb)
    union = area_a + area_b - inter
    return float(inter / union) if union > 0 else 0.0


def center_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.hypot(*(np.asarray(a).reshape(-1, 2).mean(0) - np.asarray(b).reshape(-1, 2).mean(0))))


def success_curve(overlaps: Sequence[float]) -> np.ndarray:
    """Fraction of frames whose overlap exceeds each threshold."""
    o = np.asarray(overlaps, dtype=np.float64)
    return np.array([np.mean(o > t) for t in THRESHOLDS]) if o.size else np.zeros_like(THRESHOLDS)


def ope_summary(overlaps: Sequence[float], errors: Sequence[float]) -> dict[str, float]:
    """Success AUC (mean of the success curve) and precision at 20 px."""
    e = np.asarray(errors, dtype=np.float64)
    return {"success_auc": float(success_curve(overlaps).mean()),
            "precision_20": float(np.mean(e <= 20)) if e.size else 0.0}


def vot_restart(n_frames: int, gt: Sequence[np.ndarray], init: Callable[[int], None],
                step: Callable[[int], np.ndarray]) -> dict:
    """Run the VOT supervised protocol with callbacks ``init(frame)`` and ``step(frame) -> polygon``.

    A failure is a frame with zero overlap; the tracker is re-initialised ``SKIP`` frames
    later. Accuracy is the mean overlap over tracked frames outside the ``BURN_IN`` frames
    that follow each initialisation.
    """
    overlaps: list[float | None] = [None] * n_frames
    failures, f, since_init = 0, 0, 0
    init(0)
    f, since_init = 1, 1
    while f < n_frames:
        poly = step(f)
        o = polygon_iou(poly, gt[f])
        if o <= 0:
            failures += 1
            overlaps[f] = 0.0
            f += SKIP
            if f < n_frames:
                init(f)
                since_init = 1
                f += 1
            continue
        overlaps[f] = o if since_init >= BURN_IN else None
        since_init += 1
        f += 1
    counted = [o for o in overlaps if o is not None and o > 0]
    return {"failures": failures, "accuracy": float(np.mean(counted)) if counted else 0.0,
            "overlaps": [None if o is None else round(o, 5) for o in overlaps]}
