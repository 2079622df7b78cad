"""OpenCV trackers behind siamtrack's ``init`` / ``track`` API, so the harness scores them as baselines.

They only give boxes: each result's mask is the filled box and its rotated box is the box.
MIL ships with every OpenCV build; CSRT and KCF need the contrib build
(``opencv-contrib-python``), found either at the top level or under ``cv2.legacy``.
MIL draws its samples from a process-wide random generator that ``cv2.setRNGSeed`` does not
reach: the same command gives the same scores, but a sequence's score depends on which
sequences were tracked before it in the process. CSRT and KCF have no such state.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from siamtrack.errors import SiamtrackError
from siamtrack.geometry import RotatedBox, box_corners, box_mask
from siamtrack.tracker import Preset, TrackResult

FACTORIES: dict[str, str] = {
    "opencv-mil": "TrackerMIL_create",
    "opencv-csrt": "TrackerCSRT_create",
    "opencv-kcf": "TrackerKCF_create",
}


def _factory(name: str):
    attr = FACTORIES[name]
    for namespace in (cv2, getattr(cv2, "legacy", None)):
        if namespace is not None and hasattr(namespace, attr):
            return getattr(namespace, attr)
    return None


def available() -> list[str]:
    """The baselines this OpenCV build offers."""
    return [name for name in FACTORIES if _factory(name) is not None]


def _as_boxes(boxes) -> list[tuple[float, float, float, float]]:
    if len(boxes) and not isinstance(boxes[0], Sequence | np.ndarray):
        boxes = [boxes]
    return [tuple(float(v) for v in b) for b in boxes]


class OpenCVTracker:
    """One OpenCV tracker per object; results are box-only ``TrackResult`` s (an ``ObjectTracker``)."""

    arch: str = "opencv"
    precision: str = "n/a"
    preset: Preset | None = None  # OpenCV trackers have no SiamMask hyper-parameters

    def __init__(self, name: str) -> None:
        if name not in FACTORIES:
            raise SiamtrackError(f"unknown baseline {name!r}; known: {', '.join(FACTORIES)}")
        self.factory = _factory(name)
        if self.factory is None:
            raise SiamtrackError(f"{name} is not in this OpenCV build ({cv2.__version__}); it needs "
                                 f"opencv-contrib-python, available here: {', '.join(available()) or 'none'}")
        self.model_name: str = name
        self.device: str = "cpu"
        self._trackers: list = []
        self._boxes: list[tuple[float, float, float, float]] = []

    def init(self, frame: np.ndarray, boxes: Sequence[float] | Sequence[Sequence[float]], *,
             color: str = "bgr") -> list[int]:
        """Start one tracker per box (x, y, w, h); OpenCV wants whole pixels."""
        frame = _bgr(frame, color)
        self._trackers, self._boxes = [], []
        for box in _as_boxes(boxes):
            x, y, w, h = (int(round(v)) for v in box)
            tracker = self.factory()
            tracker.init(frame, (x, y, max(w, 1), max(h, 1)))
            self._trackers.append(tracker)
            self._boxes.append(box)
        return list(range(len(self._trackers)))

    def track(self, frame: np.ndarray, *, color: str = "bgr") -> list[TrackResult]:
        """Update every tracker; a lost object keeps its last box with score 0."""
        frame = _bgr(frame, color)
        shape = frame.shape[:2]
        results = []
        for i, tracker in enumerate(self._trackers):
            ok, box = tracker.update(frame)
            if ok:
                self._boxes[i] = tuple(float(v) for v in box)
            x, y, w, h = self._boxes[i]
            center = (x + w / 2, y + h / 2)
            mask = box_mask(shape, self._boxes[i])
            rotated = RotatedBox(box_corners(center, (w, h)), center[0], center[1], w, h, 0.0)
            results.append(TrackResult(i, self._boxes[i], rotated, mask, mask.astype(np.float32),
                                       1.0 if ok else 0.0, "box"))
        return results


def _bgr(frame: np.ndarray, color: str) -> np.ndarray:
    if color == "rgb":
        return np.ascontiguousarray(frame[..., ::-1])
    if color != "bgr":
        raise SiamtrackError(f"color must be 'bgr' or 'rgb', not {color!r}")
    return frame
