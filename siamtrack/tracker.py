"""The SiamMask tracker: per-object state, hyper-parameter presets, ``init`` and ``track``.

It reproduces the official ``siamese_init`` / ``siamese_track`` (mask and refine
enabled) step by step: the crops, decoding, penalties and cosine window, the size
update, the refine call at the chosen cell, the mask warp-back, the rotated box and
the final clipping. Several objects share one batched network call per frame; each
keeps its own state. The tracker knows nothing of files.

Frames are HxWx3 uint8, BGR by default (what the official network was trained on);
pass ``color="rgb"`` for RGB frames.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch

from siamtrack import geometry as geo
from siamtrack.choices import PRESET_VALUES
from siamtrack.errors import SiamtrackError
from siamtrack.geometry import RotatedBox
from siamtrack.models import SiamNetwork, missing_methods

if TYPE_CHECKING:
    from siamtrack.weights.loading import LoadedCheckpoint

__all__ = ["PRESETS", "ObjectTracker", "Preset", "RotatedBox", "SiamNetwork", "TrackResult", "Tracker"]


class BoxClippedWarning(UserWarning):
    """An initial box reached outside the frame and was clipped."""


@dataclass(frozen=True)
class Preset:
    """Tracking hyper-parameters (the official configs' ``hp`` section plus fixed defaults)."""

    name: str
    penalty_k: float
    window_influence: float
    lr: float
    seg_thr: float
    context_amount: float = 0.5
    # "official" (foolwood/SiamMask tools/test.py) or "pysot" (PySOT's SiamMaskTracker): PySOT
    # centres the box at x + (w-1)/2, rounds crop origins half up, rounds the search side
    # directly, clips the state before the mask step and pads the warped mask with 0.
    style: str = "official"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preset:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, Preset] = {name: Preset(name, **values) for name, values in PRESET_VALUES.items()}
# The built-in preset for a checkpoint that carries none (and for a network without a checkpoint).
DEFAULT_PRESET = {"siammask_sharp": "davis", "siammask_lite": "lite-untuned"}


def checkpoint_preset(loaded: LoadedCheckpoint, model_name: str) -> Preset | None:
    """The preset stored in a checkpoint, named after its model: ``<model>-tuned`` when the checkpoint
    records how it was tuned (``preset_tuning``), else ``<model>-checkpoint``; None if it stores none.

    The stored name is not kept: it may repeat a built-in name with other values.
    """
    if loaded.preset is None:
        return None
    origin = "tuned" if "preset_tuning" in loaded.meta else "checkpoint"
    return Preset.from_dict({**loaded.preset, "name": f"{model_name}-{origin}"})


@dataclass
class TrackResult:
    """One object in one frame."""

    obj_id: int
    box: tuple[float, float, float, float]
    rotated: RotatedBox
    mask: np.ndarray
    mask_prob: np.ndarray
    score: float
    polygon_source: str

    @property
    def mask_area(self) -> int:
        return int(np.count_nonzero(self.mask))

    def to_dict(self) -> dict[str, Any]:
        return {
            "obj_id": self.obj_id,
            "box": [round(v, 3) for v in self.box],
            "rotated": self.rotated.to_dict(),
            "score": round(float(self.score), 6),
            "mask_area": self.mask_area,
            "polygon_source": self.polygon_source,
        }


@dataclass
class ObjectState:
    """What the tracker carries from frame to frame for one object (centre/size are float64)."""

    center: np.ndarray
    size: np.ndarray
    score: float = 1.0


@dataclass
class StepRecord:
    """Internals of the last step for one object (for tests, debugging and benchmarks)."""

    best_id: int
    best_row: int
    best_col: int
    crop_box: tuple[float, float, int, int]
    pscore: np.ndarray
    score: np.ndarray
    penalty: np.ndarray
    mask127: np.ndarray
    unclipped_center: np.ndarray
    unclipped_size: np.ndarray


@dataclass
class _Timer:
    enabled: bool = False
    sync: bool = False
    stages: dict[str, float] = field(default_factory=dict)
    _t: float = 0.0

    def start(self) -> None:
        if self.enabled:
            self.stages = {}
            self._sync()
            self._t = time.perf_counter()

    def mark(self, stage: str) -> None:
        if self.enabled:
            self._sync()
            now = time.perf_counter()
            self.stages[stage] = self.stages.get(stage, 0.0) + now - self._t
            self._t = now

    def _sync(self) -> None:
        if self.sync:
            torch.cuda.synchronize()


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; asking for CUDA without one is a user error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SiamtrackError("CUDA was requested but no CUDA device is available (use --device cpu)")
    return dev


def _check_frame(frame: np.ndarray, color: str) -> np.ndarray:
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


class Tracker:
    """Track one or several objects through a video with a SiamMask network.

    Example::

        tracker = Tracker.from_pretrained()           # the default model
        tracker.init(first_frame, [(305, 112, 165, 250)])
        for frame in frames:
            (result,) = tracker.track(frame)
            result.mask, result.rotated.points, result.box
    """

    def __init__(self, model: SiamNetwork, preset: str | Preset | dict = "davis", *,
                 device: str | torch.device = "auto", precision: str = "auto",
                 model_name: str | None = None) -> None:
        from siamtrack.engine import prepare_network

        missing = missing_methods(model)
        if missing:
            raise SiamtrackError(f"{type(model).__name__} is not a SiamMask network: it lacks {', '.join(missing)} "
                                 "(the interface is siamtrack.models.SiamNetwork)")
        self.device = resolve_device(device)
        self.preset = self._make_preset(preset)
        self.arch = getattr(model, "arch", type(model).__name__)
        self.model_name = model_name or self.arch
        self.net, self.precision = prepare_network(model, self.device, precision)
        self.anchors = geo.generate_anchors()
        self.window = geo.cosine_window()
        self.states: list[ObjectState] = []
        self.last_steps: list[StepRecord] = []
        self._kernels = None
        self._avg_chans: np.ndarray | None = None
        self._timer = _Timer(sync=self.device.type == "cuda")

    @staticmethod
    def _make_preset(preset: str | Preset | dict) -> Preset:
        if isinstance(preset, Preset):
            return preset
        if isinstance(preset, dict):
            return Preset.from_dict(preset)
        if preset not in PRESETS:
            raise SiamtrackError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        return PRESETS[preset]

    @property
    def _pysot(self) -> bool:
        return self.preset.style == "pysot"

    # construction -------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | Path, *, preset: str | Preset | None = None,
                        device: str | torch.device = "auto", precision: str = "auto",
                        model_name: str | None = None) -> Tracker:
        """A tracker from a checkpoint file of any supported layout."""
        from siamtrack.weights.loading import load_checkpoint

        loaded = load_checkpoint(path)
        chosen = (preset or checkpoint_preset(loaded, model_name or Path(path).stem)
                  or DEFAULT_PRESET.get(loaded.arch, "davis"))
        return cls(loaded.model, chosen, device=device, precision=precision,
                   model_name=model_name or Path(path).name)

    @classmethod
    def from_pretrained(cls, name: str | None = None, *, preset: str | Preset | None = None,
                        device: str | torch.device = "auto", precision: str = "auto") -> Tracker:
        """A tracker from a registry name (downloaded if needed); ``None`` is the default model."""
        from siamtrack import weights
        from siamtrack.weights.loading import load_checkpoint

        entry, path = weights.resolve(name)
        loaded = load_checkpoint(path)
        chosen = preset or checkpoint_preset(loaded, entry.name) or entry.preset
        return cls(loaded.model, chosen, device=device, precision=precision, model_name=entry.name)

    # profiling ----------------------------------------------------------------------------
    @property
    def profile(self) -> bool:
        return self._timer.enabled

    @profile.setter
    def profile(self, on: bool) -> None:
        self._timer.enabled = bool(on)

    @property
    def last_timings(self) -> dict[str, float]:
        """Seconds per stage of the last ``init``/``track`` call (when ``profile`` is on)."""
        return dict(self._timer.stages)

    def flops_per_frame(self) -> int:
        """Network FLOPs (2 x multiply-adds) of one track step for one object."""
        from siamtrack.engine import count_track_flops

        return count_track_flops(self.net, self.device)

    # tracking -----------------------------------------------------------------------------
    def _grad_context(self):
        from siamtrack.engine import grad_context

        return grad_context(self.precision)

    def _crops(self, frame: np.ndarray, centers: list[np.ndarray], sides: list[float], out_size: int
               ) -> torch.Tensor:
        """The network input (K, 3, out, out) float: crops cut on the CPU, or on the GPU from one upload."""
        half_up = self._pysot
        if self.device.type == "cuda":
            from siamtrack.geometry_torch import context_crop_torch

            ft = torch.from_numpy(frame).to(self.device, non_blocking=True)
            crops = [context_crop_torch(ft, c, s, out_size, self._avg_chans, half_up) for c, s in zip(centers, sides,
                                                                                                 strict=True)]
            batch = torch.stack(crops)
        else:
            batch = torch.from_numpy(np.stack([geo.context_crop(frame, c, s, out_size, self._avg_chans, half_up)
                                               for c, s in zip(centers, sides, strict=True)]))
        return batch.permute(0, 3, 1, 2).float()

    def init(self, frame: np.ndarray, boxes: Sequence[float] | Sequence[Sequence[float]], *,
             color: str = "bgr") -> list[int]:
        """Start tracking the objects in ``boxes`` (x, y, w, h each); forgets earlier objects."""
        frame = _check_frame(frame, color)
        if len(boxes) and not isinstance(boxes[0], Sequence | np.ndarray):
            boxes = [boxes]  # a single box
        if not len(boxes):
            raise SiamtrackError("init needs at least one box")
        h, w = frame.shape[:2]
        timer = self._timer
        timer.start()
        self._avg_chans = frame.mean(axis=(0, 1))
        self.states = []
        sides = []
        for box in boxes:
            box, clipped = clip_box(box, (w, h))
            if clipped:
                warnings.warn(f"box clipped to the frame: {','.join(f'{v:g}' for v in box)}",
                              BoxClippedWarning, stacklevel=2)
            center, size = geo.xywh_to_center(box)
            if self._pysot:
                center -= 0.5
            self.states.append(ObjectState(center, size))
            sides.append(geo.exemplar_side(size, self.preset.context_amount))
        z = self._crops(frame, [st.center for st in self.states], sides, geo.EXEMPLAR_SIZE)
        timer.mark("crop")
        with self._grad_context():
            self._kernels = self.net.template(z)
        timer.mark("backbone")
        self.last_steps = []
        return list(range(len(self.states)))

    def track(self, frame: np.ndarray, *, color: str = "bgr") -> list[TrackResult]:
        """Advance every object by one frame."""
        if self._kernels is None:
            raise SiamtrackError("call init(frame, boxes) before track(frame)")
        frame = _check_frame(frame, color)
        h, w = frame.shape[:2]
        p = self.preset
        timer = self._timer
        timer.start()
        if self._pysot:
            ratio = geo.INSTANCE_SIZE / geo.EXEMPLAR_SIZE
            sides = [round(geo.context_size(st.size, p.context_amount) * ratio) for st in self.states]
        else:
            sides = [geo.search_side(st.size, p.context_amount) for st in self.states]
        x = self._crops(frame, [st.center for st in self.states], sides, geo.INSTANCE_SIZE)
        timer.mark("crop")
        with self._grad_context():
            feats = self.net.backbone(x)
            timer.mark("backbone")
            cls, loc, search = self.net.heads(feats, self._kernels)
            k = len(self.states)
            score = torch.softmax(cls.detach().float().reshape(k, 2, -1), dim=1)[:, 1].cpu().numpy()
            delta = loc.detach().float().reshape(k, 4, -1).cpu().numpy()
            timer.mark("heads")
            picks = [self._select(st, score[i], delta[i], sides[i]) for i, st in enumerate(self.states)]
            rows = torch.tensor([pk[1] for pk in picks], device=self.device)
            cols = torch.tensor([pk[2] for pk in picks], device=self.device)
            masks = torch.sigmoid(self.net.refine(search, rows, cols).detach().float()).cpu().numpy()
        timer.mark("refine")
        results = []
        self.last_steps = []
        for i, st in enumerate(self.states):
            results.append(self._finish(i, st, picks[i], masks[i], sides[i], (w, h)))
        timer.mark("post")
        if timer.enabled:  # otherwise stages are the last profiled call's, total included
            timer.stages["total"] = sum(timer.stages.values())
        return results

    def _select(self, st: ObjectState, score: np.ndarray, delta: np.ndarray, side: float):
        """Pick the best candidate and update the state (before clipping), official arithmetic."""
        p = self.preset
        scale_x = geo.EXEMPLAR_SIZE / geo.context_size(st.size, p.context_amount)
        boxes = geo.decode_boxes(delta, self.anchors)
        ratio = st.size[0] / st.size[1] if self._pysot else None
        penalty = geo.size_penalty(boxes, st.size * scale_x, p.penalty_k, ratio)
        pscore = penalty * score
        pscore = pscore * (1 - p.window_influence) + self.window * p.window_influence
        if not np.all(np.isfinite(pscore)):
            pscore = np.where(np.isfinite(pscore), pscore, -np.inf)
        best = int(np.argmax(pscore))
        _, row, col = np.unravel_index(best, (len(geo.RATIOS) * len(geo.SCALES), geo.SCORE_SIZE, geo.SCORE_SIZE))
        pred = boxes[:, best] / scale_x
        lr = penalty[best] * score[best] * p.lr
        center = np.array([pred[0] + st.center[0], pred[1] + st.center[1]])
        size = np.array([st.size[0] * (1 - lr) + pred[2] * lr, st.size[1] * (1 - lr) + pred[3] * lr])
        if not (np.all(np.isfinite(center)) and np.all(np.isfinite(size))):
            center, size = st.center.copy(), st.size.copy()
        return best, int(row), int(col), center, size, float(score[best]), (pscore, score, penalty)

    def _finish(self, i: int, st: ObjectState, pick, mask127: np.ndarray, side: float,
                frame_wh: tuple[int, int]) -> TrackResult:
        best, row, col, center, size, best_score, debug = pick
        box = geo.crop_box(st.center, side)
        unclipped = (center, size)
        clipped = geo.clip_state(center, size, frame_wh)
        if self._pysot:
            center, size = clipped  # PySOT clips first: the fallback box is the clipped state
        window = geo.mask_window(box, row, col)
        prob = geo.warp_mask_to_frame(mask127, window, frame_wh, border=0.0 if self._pysot else -1.0)
        binary = (prob > self.preset.seg_thr).astype(np.uint8)
        rotated, source = geo.rotated_box_from_mask(binary, center, size)
        self.last_steps.append(StepRecord(best, row, col, box, *debug, mask127, *unclipped))
        st.center, st.size = clipped
        st.score = best_score
        np.maximum(prob, 0.0, out=prob)
        return TrackResult(
            obj_id=i,
            box=geo.center_to_xywh(st.center, st.size),
            rotated=rotated,
            mask=binary.astype(bool),
            mask_prob=prob,
            score=best_score,
            polygon_source=source,
        )

    def with_preset(self, **changes: Any) -> Tracker:
        """Change hyper-parameters in place (e.g. for tuning) and return self."""
        self.preset = replace(self.preset, **changes)
        return self
