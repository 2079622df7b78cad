"""What the tracker needs of a network once a backend has prepared it: ``Runtime``.

A backend (``siamtrack.backends``) turns a network into a runtime: the network's calls on its
device and precision, the crops in the input layout it wants and the context its calls run in.
The tracker holds one and never builds one, so it depends on no backend: a new backend is a new
runtime, not a branch in the tracker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from siamtrack.models import NetworkSpec
from siamtrack.styles import Style


@runtime_checkable
class Runtime(Protocol):
    """A prepared network. Half-precision runtimes also offer ``decision_margin`` (a float: decisions
    whose top two cells are closer are re-made) and ``exact_backbone`` (the trunk in fp32)."""

    backend: str  # "torch" or "onnxruntime"
    device: torch.device
    precision: str  # the mode it runs (never "auto")
    threads: int | None  # its own intra-op threads; None: torch's process-wide setting
    spec: NetworkSpec

    def crops(self, frame: np.ndarray, centers: Sequence[np.ndarray], sides: Sequence[float], out_size: int,
              pad: np.ndarray, style: Style) -> Any:
        """The network input of K crops of ``frame`` (what ``template`` / ``backbone`` take)."""
        ...

    def inference(self) -> AbstractContextManager:
        """The context every network call runs in (e.g. no autograd)."""
        ...

    def template(self, z: Any) -> Any:
        """Per-object kernels of template crops (opaque: they go back into ``heads``)."""
        ...

    def backbone(self, x: Any) -> Any:
        ...

    def heads(self, feats: Any, kernels: Any) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Score and box maps and the search features ``refine`` needs (with ``corr``)."""
        ...

    def refine(self, feats: Any, rows: torch.Tensor, cols: torch.Tensor,
               batch_idx: torch.Tensor | None = None) -> torch.Tensor:
        ...

    def flops_per_step(self) -> int:
        """Network FLOPs of one track step for one object."""
        ...

    def sync(self) -> None:
        """Wait for queued device work (so that a stage's time is its own)."""
        ...


@dataclass
class StageTimer:
    """Seconds per stage of one ``init``/``track`` call, when enabled (``Tracker.profile``)."""

    sync: Callable[[], None]
    enabled: bool = False
    stages: dict[str, float] = field(default_factory=dict)
    _t: float = 0.0

    def start(self) -> None:
        if self.enabled:
            self.stages = {}
            self.sync()
            self._t = time.perf_counter()

    def mark(self, stage: str) -> None:
        if self.enabled:
            self.sync()
            now = time.perf_counter()
            self.stages[stage] = self.stages.get(stage, 0.0) + now - self._t
            self._t = now
