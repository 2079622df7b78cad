"""What a tracker gives per object and frame (``TrackResult``), what every tracker offers
(``ObjectTracker``), the checks on a caller's frames and boxes, and the frame-sized outputs of a step."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np
import torch

from siamtrack import geometry as geo
from siamtrack.errors import SiamtrackError
from siamtrack.geometry import RotatedBox
from siamtrack.lost import LOST, TRACKED
from siamtrack.presets import Preset

__all__ = ["BoxClippedWarning", "ObjectTracker", "TrackResult", "check_frame", "clip_box", "frame_outputs",
           "lost_result", "output_box"]


class BoxClippedWarning(UserWarning):
    """An initial box reached outside the frame and was clipped."""


@dataclass
class TrackResult:
    """One object in one frame.

    ``state`` is ``tracked``, ``uncertain`` (mask and box given, but the evidence is weak) or
    ``lost`` (the object is not found: ``box`` and ``rotated`` are None, the mask is empty and
    ``score`` is the best re-detection candidate's).
    """

    obj_id: int
    box: tuple[float, float, float, float] | None
    rotated: RotatedBox | None
    mask: np.ndarray
    mask_prob: np.ndarray
    score: float
    polygon_source: str
    state: str = TRACKED

    @property
    def mask_area(self) -> int:
        return int(np.count_nonzero(self.mask))

    def to_dict(self) -> dict[str, Any]:
        """The record written to tracks.json; always valid JSON (a non-finite score is null)."""
        score = float(self.score)
        return {
            "obj_id": self.obj_id,
            "state": self.state,
            "box": None if self.box is None else [round(v, 3) for v in self.box],
            "rotated": None if self.rotated is None else self.rotated.to_dict(),
            "score": round(score, 6) if math.isfinite(score) else None,
            "mask_area": self.mask_area,
            "polygon_source": self.polygon_source,
        }


@runtime_checkable
class ObjectTracker(Protocol):
    """What the eval harness, the commands and the benchmarks drive: ``Tracker``, the OpenCV
    baselines (``siamtrack.eval.baselines``) and test doubles implement it."""

    model_name: str
    arch: str
    precision: str
    device: str | torch.device
    preset: Preset | None  # the hyper-parameters a run records; None for trackers without any

    def init(self, frame: np.ndarray, boxes: Sequence[float] | Sequence[Sequence[float]], *,
             color: str = "bgr") -> list[int]:
        """Start tracking ``boxes`` (x, y, w, h each) on ``frame``; returns the object ids."""
        ...

    def track(self, frame: np.ndarray, *, color: str = "bgr") -> list[TrackResult]:
        """One result per object for the next frame."""
        ...


def check_frame(frame: np.ndarray, color: str) -> np.ndarray:
    """``frame`` as HxWx3 uint8 BGR (``color``: what it holds); anything else is a user error."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        desc = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise SiamtrackError(f"frames must be HxWx3 uint8 arrays, got {desc}")
    if color == "bgr":
        return frame
    if color == "rgb":
        return np.ascontiguousarray(frame[..., ::-1])
    raise SiamtrackError(f"color must be 'bgr' or 'rgb', not {color!r}")


def clip_box(box: Sequence[float], frame_wh: tuple[int, int]) -> tuple[tuple[float, float, float, float], bool]:
    """Clip an (x, y, w, h) box to the frame; error if nothing of it is inside or it has no area."""
    if len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
        raise SiamtrackError(f"a box is 4 finite numbers x,y,w,h, got {tuple(box)}")
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise SiamtrackError(f"box {x:g},{y:g},{w:g},{h:g} has zero area")
    fw, fh = frame_wh
    x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, float(fw)), min(y + h, float(fh))
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise SiamtrackError(f"box {x:g},{y:g},{w:g},{h:g} is outside the {fw}x{fh} frame")
    clipped = (x0, y0, x1 - x0, y1 - y0)
    return clipped, clipped != (x, y, w, h)


def lost_result(obj_id: int, frame_wh: tuple[int, int], score: float) -> TrackResult:
    """The result of an object not found: no box, an empty mask."""
    w, h = frame_wh
    return TrackResult(obj_id, None, None, np.zeros((h, w), bool), np.zeros((h, w), np.float32), score, "lost", LOST)


def frame_outputs(mask127: np.ndarray | None, window: tuple[float, float, float, float] | None,
                  state: tuple[np.ndarray, np.ndarray], frame_wh: tuple[int, int], seg_thr: float,
                  mask_pad: float) -> tuple[np.ndarray, np.ndarray, RotatedBox, str, tuple[int, int, int, int]]:
    """Mask (bool), probabilities (>= 0), rotated box, polygon source in frame coordinates, and the
    region (x0, y0, x1, y1) outside which the mask is empty.

    ``mask127`` is the refined mask over ``window`` (x, y, w, h in the frame); ``None`` for a
    box-only network, whose mask is the filled box of ``state`` (centre, size) and whose rotated
    box is that box. The rotated box of a mask falls back to ``state`` where the mask is empty.
    Only the region the window reaches is warped, thresholded and traced (outside it the warp
    holds ``mask_pad``): on a small object that is most of the step's work after the network.
    """
    h, w = frame_wh[1], frame_wh[0]
    if mask127 is None:
        mask = geo.box_mask((h, w), geo.center_to_xywh(*state))
        return mask, mask.astype(np.float32), geo.state_box(*state), "box", (0, 0, w, h)
    region = geo.mask_region(mask127.shape[0], window, frame_wh) if mask_pad <= min(seg_thr, 0.0) else (0, 0, w, h)
    x0, y0, x1, y1 = region
    prob_in = geo.warp_mask_to_frame(mask127, window, frame_wh, border=mask_pad, region=region)
    binary, prob = np.zeros((h, w), dtype=bool), np.zeros((h, w), dtype=np.float32)
    binary_in = binary[y0:y1, x0:x1]
    np.greater(prob_in, seg_thr, out=binary_in)
    rotated, source = geo.rotated_box_from_mask(binary_in.view(np.uint8), *state, offset=(x0, y0))
    np.maximum(prob_in, 0.0, out=prob[y0:y1, x0:x1])
    return binary, prob, rotated, source, region


def output_box(box: tuple[float, float, float, float], mask: np.ndarray, prob: np.ndarray, source: str,
               confidence: float | None, region: tuple[int, int, int, int] | None = None
               ) -> tuple[float, float, float, float]:
    """The axis-aligned box of a result: the refined mask's bounding box where the mask is confident
    (mean probability over its pixels >= ``confidence``), else ``box`` (the regression's).
    ``region`` (x0, y0, x1, y1): where the mask may be non-empty (``frame_outputs``)."""
    if confidence is None or source == "box":
        return box
    x0, y0, x1, y1 = region if region is not None else (0, 0, mask.shape[1], mask.shape[0])
    binary = mask[y0:y1, x0:x1].view(np.uint8)
    if binary.size == 0:
        return box
    x, y, w, h = cv2.boundingRect(binary)  # OpenCV: a quarter of numpy's time on a 854x480 frame
    if w == 0 or cv2.mean(prob[y0:y1, x0:x1], mask=binary)[0] < confidence:
        return box
    return float(x + x0), float(y + y0), float(w), float(h)
