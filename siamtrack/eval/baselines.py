"""OpenCV trackers behind siamtrack's ``init`` / ``track`` API, so the harness scores them as baselines.

They only give boxes: each result's mask is the filled box and its rotated box is the box.
MIL ships with every OpenCV build; CSRT and KCF need the contrib build
(``opencv-contrib-python``), found either at the top level or under ``cv2.legacy``.
MIL draws its samples from a process-wide random generator that ``cv2.setRNGSeed`` does not
reach: the same command gives the same scores, but a sequence's score depends on which
sequences were tracked before it in the process. CSRT and KCF have no such state.

The learned peers ``opencv-nano`` (``cv2.TrackerNano``, NanoTrack v2) and ``opencv-vit``
(``cv2.TrackerVit``, VitTrack) are in every OpenCV build but run ONNX networks: their files
are registry models of the same names (``siamtrack weights download opencv-nano``), checked
by size and SHA-256 like any model. They report their own confidence (``getTrackingScore``):
a frame they do not accept (``update`` returns false) keeps the box they found, marked
``uncertain``, as a user of OpenCV gets it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from siamtrack.errors import SiamtrackError
from siamtrack.geometry import RotatedBox, box_corners, box_mask
from siamtrack.lost import TRACKED, UNCERTAIN
from siamtrack.presets import Preset
from siamtrack.results import TrackResult

FACTORIES: dict[str, str] = {
    "opencv-mil": "TrackerMIL_create",
    "opencv-csrt": "TrackerCSRT_create",
    "opencv-kcf": "TrackerKCF_create",
}

# Learned peers: (Params class, factory, the Params fields that take the registry files, in file order).
PEERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "opencv-nano": ("TrackerNano_Params", "TrackerNano_create", ("backbone", "neckhead")),
    "opencv-vit": ("TrackerVit_Params", "TrackerVit_create", ("net",)),
}
TRACKERS = (*FACTORIES, *PEERS)


def _peer_factory(name: str) -> Callable[[], object]:
    """A maker of the peer's OpenCV tracker, its ONNX files found (and checked) through the registry.

    Missing files are a one-line error naming the download command: nothing is fetched unasked.
    """
    from siamtrack import weights

    params_class, create, fields = PEERS[name]
    _, paths = weights.resolve_files(name, download_missing=False)
    params = getattr(cv2, params_class)()
    for field, path in zip(fields, paths, strict=True):
        setattr(params, field, str(Path(path).resolve()))
    factory = getattr(cv2, create)

    def make():
        level = cv2.utils.logging.getLogLevel()  # OpenCV's DNN warns about targets on every network it builds
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            return factory(params)
        except cv2.error as exc:
            raise SiamtrackError(f"OpenCV {cv2.__version__} cannot build {name} from {', '.join(map(str, paths))}: "
                                 f"{str(exc).strip().splitlines()[-1]}") from None
        finally:
            cv2.utils.logging.setLogLevel(level)

    make()  # a file OpenCV cannot read fails here, before any sequence is tracked
    return make


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
    """One OpenCV tracker per object; results are box-only ``TrackResult`` s (an ``ObjectTracker``).

    ``last_timings`` holds the wall time of the last ``init``/``track`` (its one stage, ``total``),
    so that ``siamtrack bench`` times it beside siamtrack's own trackers.
    """

    arch: str = "opencv"
    precision: str = "n/a"
    backend: str = "opencv"
    preset: Preset | None = None  # OpenCV trackers have no SiamMask hyper-parameters
    profile: bool = False  # the bench switches it on; the one stage is always timed

    def __init__(self, name: str) -> None:
        if name not in TRACKERS:
            raise SiamtrackError(f"unknown baseline {name!r}; known: {', '.join(TRACKERS)}")
        self.learned = name in PEERS
        self.factory = _peer_factory(name) if self.learned else _factory(name)
        if self.factory is None:
            raise SiamtrackError(f"{name} is not in this OpenCV build ({cv2.__version__}); it needs "
                                 f"opencv-contrib-python, available here: {', '.join(available()) or 'none'}")
        self.model_name: str = name
        self.device: str = "cpu"
        self.last_timings: dict[str, float] = {}
        self._trackers: list = []
        self._boxes: list[tuple[float, float, float, float]] = []

    @property
    def threads(self) -> int:
        return cv2.getNumThreads()

    def flops_per_frame(self) -> None:
        """Unknown: OpenCV does not count its networks' operations."""
        return None

    def init(self, frame: np.ndarray, boxes: Sequence[float] | Sequence[Sequence[float]], *,
             color: str = "bgr") -> list[int]:
        """Start one tracker per box (x, y, w, h); OpenCV wants whole pixels."""
        t0 = time.perf_counter()
        frame = _bgr(frame, color)
        self._trackers, self._boxes = [], []
        for box in _as_boxes(boxes):
            x, y, w, h = (int(round(v)) for v in box)
            tracker = self.factory()
            tracker.init(frame, (x, y, max(w, 1), max(h, 1)))
            self._trackers.append(tracker)
            self._boxes.append(box)
        self.last_timings = {"total": time.perf_counter() - t0}
        return list(range(len(self._trackers)))

    def track(self, frame: np.ndarray, *, color: str = "bgr") -> list[TrackResult]:
        """Update every tracker. A classic baseline that loses its object keeps its last box with
        score 0; a learned peer reports the box it found with its own score (``uncertain`` if it
        did not accept it)."""
        t0 = time.perf_counter()
        frame = _bgr(frame, color)
        shape = frame.shape[:2]
        results = []
        for i, tracker in enumerate(self._trackers):
            ok, box = tracker.update(frame)
            if ok or (self.learned and box[2] > 0 and box[3] > 0):
                self._boxes[i] = tuple(float(v) for v in box)
            score = float(tracker.getTrackingScore()) if self.learned else float(ok)
            x, y, w, h = self._boxes[i]
            center = (x + w / 2, y + h / 2)
            mask = box_mask(shape, self._boxes[i])
            rotated = RotatedBox(box_corners(center, (w, h)), center[0], center[1], w, h, 0.0)
            results.append(TrackResult(i, self._boxes[i], rotated, mask, mask.astype(np.float32),
                                       score, "box", TRACKED if ok else UNCERTAIN))
        self.last_timings = {"total": time.perf_counter() - t0}
        return results


def _bgr(frame: np.ndarray, color: str) -> np.ndarray:
    if color == "rgb":
        return np.ascontiguousarray(frame[..., ::-1])
    if color != "bgr":
        raise SiamtrackError(f"color must be 'bgr' or 'rgb', not {color!r}")
    return frame
