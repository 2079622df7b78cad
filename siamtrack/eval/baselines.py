"""OpenCV trackers behind the tracker interface, as baselines: their mask is the filled box."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from siamtrack.errors import SiamtrackError
from siamtrack.geometry import RotatedBox, box_corners, box_mask
from siamtrack.tracker import TrackResult

FACTORIES = {
    "opencv-mil": ("TrackerMIL_create",),
    "opencv-csrt": ("TrackerCSRT_create",),
    "opencv-kcf": ("TrackerKCF_create",),
}


def _factory(name: str):
    for attr in FACTORIES[name]:
        for ns in (cv2, getattr(cv2, "legacy", None)):
            if ns is not None and hasattr(ns, attr):
                return getattr(ns, attr)
    return None


def available() -> list[str]:
    """The baselines this OpenCV build offers (CSRT and KCF need opencv-contrib-python)."""
    return [n for n in FACTORIES if _factory(n) is not None]


class OpenCVTracker:
    """Several independent OpenCV trackers with ``init(frame, boxes)`` / ``track(frame)``."""

    def __init__(self, name: str) -> None:
        if name not in FACTORIES:
            raise SiamtrackError(f"unknown baseline {name!r}; known: {', '.join(FACTORIES)}")
        self.factory = _factory(name)
        if self.factory is None:
            raise SiamtrackError(f"{name} is not in this OpenCV build (install opencv-contrib-python)")
        self.model_name = name
        self.arch = "opencv"
        self.precision = "n/a"
        self._trackers: list = []
        self._boxes: list[tuple[float, float, float, float]] = []

    def init(self, frame: np.ndarray, boxes: Sequence[Sequence[float]]) -> list[int]:
        self._trackers, self._boxes = [], []
        for box in boxes:
            t = self.factory()
            t.init(frame, tuple(int(round(v)) for v in box))
            self._trackers.append(t)
            self._boxes.append(tuple(float(v) for v in box))
        return list(range(len(boxes)))

    def track(self, frame: np.ndarray) -> list[TrackResult]:
        h, w = frame.shape[:2]
        out = []
        for i, t in enumerate(self._trackers):
            ok, box = t.update(frame)
            if ok:
                self._boxes[i] = tuple(float(v) for v in box)
            x, y, bw, bh = self._boxes[i]
            mask = box_mask((h, w), (x, y, bw, bh))
            pts = box_corners((x + bw / 2, y + bh / 2), (bw, bh))
            rot = RotatedBox(pts, x + bw / 2, y + bh / 2, bw, bh, 0.0)
            out.append(TrackResult(i, (x, y, bw, bh), rot, mask, mask.astype(np.float32), 1.0 if ok else 0.0, "box"))
        return out
