"""Box benchmarks: one-pass evaluation (OTB success and precision) and the VOT restart protocol.

Overlaps are exact polygon IoU (convex clipping, no rasterisation), so rotated ground truth
(VOT polygons) and rotated predictions are compared as what they are; axis-aligned boxes
are polygons too.

Conventions, following the OTB toolkit and PySOT's toolkit:

* OPE scores every frame, the first included (its prediction is the initial box). A frame
  whose ground truth is missing (NaN, zero or negative size) counts as a miss in the
  success curve and as a hit in the precision curve, exactly as both toolkits count it.
  Benchmark scores average the per-sequence curves (each sequence weighs the same).
* Success thresholds 0, 0.05, ..., 1 (21, strictly greater); AUC = mean of the curve.
  Precision: centre distance <= 20 px.
* VOT restart: a failure is a frame whose overlap (both regions clipped to the image) is 0;
  the tracker is re-initialised on the 5th frame after it. Accuracy leaves out failure
  frames, skipped frames and 10 burn-in frames from each (re-)initialisation, that frame
  included (PySOT's ``burnin=10``); the benchmark accuracy pools the counted frames of all
  sequences (PySOT), robustness is the mean number of failures per sequence.
* EAO (VOT-2016/2018 expected average overlap): every (re-)initialisation starts a segment
  that runs to the next failure (which ends it and counts, with everything after it, as
  overlap 0) or to the end of the sequence. For each length N the segments' mean overlap over
  their first N frames after the initialisation (a finished segment only up to its length)
  gives the expected-overlap curve; EAO is its mean over the lengths ``lo..hi`` that the
  segments reach (VOT-2018: 100..356). This is the VOT toolkit's definition (vot-toolkit
  ``vot.analysis.supervised``), burn-in frames included as there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

THRESHOLDS = np.linspace(0.0, 1.0, 21)
PRECISION_PX = 20.0
BURN_IN = 10
SKIP = 5
EAO_INTERVAL = (100, 356)  # the sequence lengths EAO averages in VOT-2017 and VOT-2018 (short-term)
MISSING_BOX = np.zeros((4, 2))  # what a tracker that lost its target "predicts": no area, overlap 0


def box_polygon(box: Sequence[float]) -> np.ndarray:
    """``(x, y, w, h)`` or 8 numbers -> (4, 2) float64 corners."""
    v = np.asarray(box, dtype=np.float64).ravel()
    if v.size == 8:
        return v.reshape(4, 2)
    if v.size != 4:
        raise ValueError(f"a box has 4 or 8 numbers, got {v.size}")
    x, y, w, h = v
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])


def _hull(poly: np.ndarray) -> np.ndarray:
    return cv2.convexHull(np.asarray(poly, dtype=np.float32).reshape(-1, 2))


def polygon_area(poly: np.ndarray) -> float:
    """Area of the polygon's convex hull (0 for degenerate or non-finite polygons)."""
    p = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(p).all():
        return 0.0
    return float(cv2.contourArea(_hull(p)))


def _clip(poly: np.ndarray, bounds: tuple[float, float]) -> np.ndarray | None:
    """The part of a convex polygon inside ``[0, w] x [0, h]``, or None if nothing is."""
    w, h = bounds
    frame = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    area, inside = cv2.intersectConvexConvex(_hull(poly), frame)
    return None if area <= 0 or inside is None else inside


def polygon_iou(a: np.ndarray, b: np.ndarray, bounds: tuple[float, float] | None = None) -> float:
    """IoU of two convex polygons, optionally both clipped to a ``(width, height)`` image first."""
    if polygon_area(a) <= 0 or polygon_area(b) <= 0:
        return 0.0
    pa, pb = _hull(a), _hull(b)
    if bounds is not None:
        pa, pb = _clip(pa, bounds), _clip(pb, bounds)
        if pa is None or pb is None:
            return 0.0
    area_a, area_b = cv2.contourArea(pa), cv2.contourArea(pb)
    inter, _ = cv2.intersectConvexConvex(pa, pb)
    union = area_a + area_b - inter
    return float(min(max(inter / union, 0.0), 1.0)) if union > 0 else 0.0


def center_error(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between the corner means of two polygons (the box centres)."""
    ca = np.asarray(a, dtype=np.float64).reshape(-1, 2).mean(axis=0)
    cb = np.asarray(b, dtype=np.float64).reshape(-1, 2).mean(axis=0)
    return float(np.hypot(*(ca - cb)))


def valid_groundtruth(poly: np.ndarray) -> bool:
    """False for the toolkits' "no annotation" frames: NaN or zero-size boxes."""
    return polygon_area(poly) > 0


def success_curve(overlaps: Sequence[float | None]) -> np.ndarray:
    """Fraction of frames with overlap > each threshold; None (no ground truth) never counts."""
    o = np.array([-1.0 if v is None else v for v in overlaps], dtype=np.float64)
    if o.size == 0:
        return np.zeros_like(THRESHOLDS)
    return (o[None, :] > THRESHOLDS[:, None]).mean(axis=1)


def precision_at(errors: Sequence[float | None], px: float = PRECISION_PX) -> float:
    """Fraction of frames with centre error <= ``px``; None (no ground truth) counts, as in OTB."""
    e = np.array([-1.0 if v is None else v for v in errors], dtype=np.float64)
    return float(np.mean(e <= px)) if e.size else 0.0


def ope_sequence(predictions: Sequence[np.ndarray | None], groundtruth: Sequence[np.ndarray]) -> dict[str, Any]:
    """OPE scores of one sequence from per-frame predicted and ground-truth polygons.

    A missing prediction (None: the tracker said the target is lost) has overlap 0 and is
    never within the precision radius; its centre error is recorded as None.
    """
    overlaps: list[float | None] = []
    errors: list[float | None] = []
    judged: list[float | None] = []
    for pred, gt in zip(predictions, groundtruth, strict=True):
        ok = valid_groundtruth(gt)
        missing = pred is None
        overlaps.append((0.0 if missing else polygon_iou(pred, gt)) if ok else None)
        errors.append(center_error(pred, gt) if ok and not missing else None)
        judged.append((math.inf if missing else errors[-1]) if ok else None)
    curve = success_curve(overlaps)
    return {"success_auc": float(curve.mean()), "precision_20": precision_at(judged),
            "success_curve": curve.tolist(), "overlaps": overlaps, "center_errors": errors}


def ope_summary(sequences: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Benchmark OPE scores: per-sequence curves averaged, each sequence weighing the same."""
    curve = np.mean([s["success_curve"] for s in sequences], axis=0)
    return {"success_auc": float(curve.mean()),
            "precision_20": float(np.mean([s["precision_20"] for s in sequences])),
            "success_curve": curve.tolist()}


def vot_restart(n_frames: int, groundtruth: Sequence[np.ndarray], init: Callable[[int], None],
                step: Callable[[int], np.ndarray], bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """The VOT supervised protocol over one sequence.

    ``init(f)`` (re-)initialises the tracker on frame ``f`` from its ground truth;
    ``step(f)`` tracks frame ``f`` and returns the predicted polygon. Per-frame records:
    ``per_frame`` holds ``"init"``, ``"skip"``, ``"fail"``, ``"nogt"`` (no annotation: tracked,
    not judged) or the overlap (a float; ``None`` for a burn-in frame, whose overlap is in
    ``burn_in_overlaps``).
    """
    per_frame: list[Any] = ["skip"] * n_frames
    burn_in: dict[int, float] = {}
    failures: list[int] = []
    next_init, since_init = 0, 0
    for f in range(n_frames):
        if f < next_init:
            continue
        valid = valid_groundtruth(groundtruth[f])
        if f == next_init:
            if not valid:  # nothing to initialise from: try the next frame
                next_init += 1
                continue
            init(f)
            per_frame[f], since_init = "init", 1
            continue
        prediction = step(f)
        if not valid:  # no annotation: tracked, but neither a failure nor counted
            per_frame[f] = "nogt"
            since_init += 1
            continue
        overlap = polygon_iou(prediction, groundtruth[f], bounds)
        if overlap <= 0:
            per_frame[f] = "fail"
            failures.append(f)
            next_init = f + SKIP
            continue
        if since_init < BURN_IN:
            burn_in[f] = overlap
            per_frame[f] = None
        else:
            per_frame[f] = overlap
        since_init += 1
    counted = [v for v in per_frame if isinstance(v, float)]
    return {"failures": len(failures), "failure_frames": failures,
            "accuracy": float(np.mean(counted)) if counted else None, "counted_frames": len(counted),
            "per_frame": per_frame, "burn_in_overlaps": {str(k): v for k, v in burn_in.items()}}


def restart_segments(sequence: dict[str, Any]) -> list[tuple[list[float], bool]]:
    """The EAO segments of one restart run: (overlaps after each initialisation, ended by a failure).

    Frames without annotation (``"nogt"``) are left out: their overlap is unknown.
    """
    burn_in = sequence.get("burn_in_overlaps", {})
    segments: list[tuple[list[float], bool]] = []
    current: list[float] | None = None
    for f, v in enumerate(sequence["per_frame"]):
        if v == "init":
            if current is not None:
                segments.append((current, False))
            current = []
        elif current is None or v in ("skip", "nogt"):
            continue
        elif v == "fail":
            segments.append((current, True))
            current = None
        else:
            current.append(burn_in[str(f)] if v is None else float(v))
    if current is not None:
        segments.append((current, False))
    return segments


def eao_curve(segments: Sequence[tuple[Sequence[float], bool]]) -> np.ndarray:
    """Expected average overlap for lengths 1..L (index N-1), L the longest segment.

    A failed segment's mean over N frames counts the frames after its failure as 0, for any
    N; a segment that reached the end of its sequence only counts for N up to its length.
    """
    if not segments:
        return np.zeros(0)
    longest = max(len(o) for o, _ in segments)
    overlaps = np.zeros((len(segments), longest))
    weight = np.zeros((len(segments), longest))
    for i, (o, failed) in enumerate(segments):
        overlaps[i, :len(o)] = o
        weight[i, : longest if failed else len(o)] = 1.0
    means = np.cumsum(overlaps, axis=1) / np.arange(1, longest + 1)
    return (weight * means).sum(axis=0) / weight.sum(axis=0)  # the longest segment covers every length


def eao_score(curve: np.ndarray, interval: tuple[int, int] = EAO_INTERVAL) -> float | None:
    """Mean of the curve over lengths ``lo..hi`` it reaches; None when it reaches none."""
    lo, hi = interval
    if not 1 <= lo <= hi:
        raise ValueError(f"an EAO interval is 1 <= lo <= hi, got {lo}..{hi}")
    values = np.asarray(curve)[lo - 1:hi]
    return float(values.mean()) if values.size else None


def restart_summary(sequences: Sequence[dict[str, Any]],
                    eao_interval: tuple[int, int] = EAO_INTERVAL) -> dict[str, Any]:
    """Pooled accuracy over every counted frame, failures in total and per sequence, and EAO."""
    counted = [v for s in sequences for v in s["per_frame"] if isinstance(v, float)]
    failures = sum(s["failures"] for s in sequences)
    curve = eao_curve([seg for s in sequences for seg in restart_segments(s)])
    return {"accuracy": float(np.mean(counted)) if counted else None,
            "robustness": failures / len(sequences), "failures": failures,
            "eao": eao_score(curve, eao_interval), "eao_interval": list(eao_interval),
            "eao_curve": curve.tolist(), "success_curve": success_curve(counted).tolist()}


def vot_init_box(poly: np.ndarray) -> tuple[float, float, float, float]:
    """Initial ``(x, y, w, h)`` from an 8-number ground-truth polygon, as the official SiamMask VOT test.

    Centre = mean of the corners; the min/max box is scaled by sqrt(polygon area / box area)
    (area from two adjacent edge lengths) and widened by one pixel.
    """
    p = np.asarray(poly, dtype=np.float64).reshape(4, 2)
    lo, hi = p.min(axis=0), p.max(axis=0)
    cx, cy = p.mean(axis=0)
    area = np.linalg.norm(p[0] - p[1]) * np.linalg.norm(p[1] - p[2])
    scale = np.sqrt(area / np.prod(hi - lo))
    w, h = scale * (hi - lo) + 1
    return float(cx - w / 2), float(cy - h / 2), float(w), float(h)
