"""Per-object tracking state carried from frame to frame, and the per-object rows of the kernels."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from siamtrack import geometry as geo
from siamtrack.lost import TRACKED, Evidence, StateMachine, similarity, updated_reference
from siamtrack.results import BoxClippedWarning, clip_box

REJECT_WITHIN = 5  # frames: lost again this soon after a re-acquisition marks its place as a distractor
MAX_REJECTS = 4  # distractor places remembered per object


@dataclass
class ObjectState:
    """What the tracker carries from frame to frame for one object (centre/size are float64)."""

    center: np.ndarray
    size: np.ndarray
    score: float = 1.0
    machine: StateMachine | None = None
    good_center: np.ndarray | None = None  # the state at the last "tracked" frame, where a lost search starts
    good_size: np.ndarray | None = None
    scans: int = 0  # lost frames so far (which grid cells the re-detection crops cover next)
    lead: np.ndarray | None = None  # a promising re-detection candidate, searched again next frame
    look: np.ndarray | None = None  # running appearance (unit correlation vector) over tracked frames
    since_found: int | None = None  # frames since the last re-acquisition
    rejects: list[np.ndarray] = field(default_factory=list)  # where re-acquisitions proved wrong (distractors)
    exits: list[tuple[int, float]] = field(default_factory=list)  # frame borders (axis, coordinate) it left by

    def observe(self, score: float, finite: bool, look: np.ndarray) -> str:
        """The state (``tracked``, ``uncertain``, ``lost``) this step's evidence leads to."""
        if self.since_found is not None:
            self.since_found += 1
        if self.machine is None:
            return TRACKED
        return self.machine.observe(Evidence(score, finite=finite, look=similarity(look, self.look)))

    def restart_search(self) -> None:
        """Search for it from where it was last seen well, at that size, from the first grid cells."""
        self.center, self.size, self.scans, self.lead = self.good_center.copy(), self.good_size.copy(), 0, None

    def lost_at(self, center: np.ndarray, score: float, frame_wh: tuple[int, int]) -> None:
        """It was lost at a step that put it at ``center``: lost this soon after a re-acquisition, that
        place was a distractor; the frame borders its last good box touched are where it may have left."""
        if self.since_found is not None and self.since_found <= REJECT_WITHIN:
            self.rejects = [*self.rejects[-(MAX_REJECTS - 1):], center.copy()]
        self.since_found = None
        self.restart_search()
        self.score, self.exits = score, borders(self.good_center, self.good_size, frame_wh)

    def found_at(self, center: np.ndarray) -> None:
        """A re-detection confirmed at ``center``: the step goes on from there at the last good size."""
        self.restart_search()
        self.center, self.since_found = center.copy(), 0

    def moved_to(self, center: np.ndarray, size: np.ndarray, score: float, tracked: bool,
                 look: np.ndarray) -> None:
        """The step's new (clipped) state; a ``tracked`` frame also becomes the last good one."""
        self.center, self.size, self.score = center, size, score
        if tracked and self.machine is not None:
            self.good_center, self.good_size = center.copy(), size.copy()
            self.look = updated_reference(self.look, look)


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
    mask_cell: tuple[int, int] | None = None  # the cell whose mask was refined (the decoder's ``mask_cell``)


def replace_row(kernels: Any, obj_id: int, new: Any) -> Any:
    """``kernels`` (a tensor, or a tuple of them: what ``net.template`` gives) with object
    ``obj_id``'s row replaced by ``new``'s only row, or appended when ``obj_id`` is one past the end."""
    if isinstance(kernels, torch.Tensor):
        return torch.cat([kernels[:obj_id], new, kernels[obj_id + 1:]])
    return type(kernels)(*(replace_row(k, obj_id, n) for k, n in zip(kernels, new, strict=True)))


def select_rows(kernels: Any, sel: torch.Tensor) -> Any:
    """Rows ``sel`` of ``kernels`` (a tensor, or a tuple of them, as ``_replace_row``)."""
    if isinstance(kernels, torch.Tensor):
        return kernels.index_select(0, sel)
    return type(kernels)(*(select_rows(k, sel) for k in kernels))


def borders(center: np.ndarray, size: np.ndarray, frame_wh: tuple[int, int]) -> list[tuple[int, float]]:
    """The frame borders a box reaches, as (axis, coordinate): where an object lost there left the frame."""
    w, h = frame_wh
    out = []
    for axis, extent in ((0, w), (1, h)):
        if center[axis] - size[axis] / 2 <= 0:
            out.append((axis, 0.0))
        if center[axis] + size[axis] / 2 >= extent:
            out.append((axis, float(extent)))
    return out


def start_state(box: Sequence[float], frame_wh: tuple[int, int], center_offset: float,
                machine: StateMachine | None) -> ObjectState:
    """A fresh object at ``box``, clipped to the frame with a ``BoxClippedWarning`` when it had to be
    (the warning names the caller of the tracker's ``init`` / ``reinit``)."""
    box, clipped = clip_box(box, frame_wh)
    if clipped:
        warnings.warn(f"box clipped to the frame: {','.join(f'{v:g}' for v in box)}", BoxClippedWarning,
                      stacklevel=4)
    center, size = geo.xywh_to_center(box)
    center += center_offset
    return ObjectState(center, size, machine=machine, good_center=center.copy(), good_size=size.copy())
