"""The tracker: per-object state through ``init`` and ``track``.

It reproduces the official ``siamese_init`` / ``siamese_track`` (mask and refine enabled) step by
step; several objects share one batched network call per frame. What varies is handed in: the
network with its backend (a ``Runtime``: ``siamtrack.backends.prepare``), its head decoder
(``siamtrack.decoders``), the preset and its arithmetic style (``siamtrack.styles``). It knows
nothing of files. Frames are HxWx3 uint8, BGR by default; pass ``color="rgb"`` for RGB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from siamtrack import geometry as geo
from siamtrack.decoders import decoder_for
from siamtrack.errors import SiamtrackError
from siamtrack.lost import LOST, TRACKED, finite
from siamtrack.presets import Preset, make_preset
from siamtrack.redetect import best_candidates, judge, search_crops
from siamtrack.results import TrackResult, check_frame, frame_outputs, lost_result, output_box
from siamtrack.runtime import Runtime, StageTimer
from siamtrack.scoring import CropScorer
from siamtrack.state import ObjectState, StepRecord, replace_row, start_state
from siamtrack.styles import Style, style_of

__all__ = ["Tracker"]


class Tracker:
    """Track one or several objects through a video with a Siamese network.

    Example::

        tracker = siamtrack.from_pretrained()         # the default model
        tracker.init(first_frame, [(305, 112, 165, 250)])
        for frame in frames:
            (result,) = tracker.track(frame)
            result.mask, result.rotated.points, result.box
    """

    def __init__(self, network: Runtime, preset: str | Preset | dict = "davis", *,
                 model_name: str | None = None) -> None:
        """``network``: a prepared network (``siamtrack.backends.prepare``; ``siamtrack.build_tracker``
        prepares and hands one over)."""
        self.net = network
        self.decoder = decoder_for(network.spec)
        self.preset = make_preset(preset)
        self.arch = network.spec.arch
        self.model_name = model_name or self.arch
        self.backend, self.device = network.backend, network.device
        self.precision, self.threads = network.precision, network.threads
        self.states: list[ObjectState] = []
        self.last_steps: list[StepRecord] = []
        self._kernels = None
        self._avg_chans: np.ndarray | None = None
        self._timer = StageTimer(network.sync)
        self.scorer = CropScorer(network, self.decoder, self._timer)

    @property
    def style(self) -> Style:
        return style_of(self.preset.style)

    @property
    def exact_decisions(self) -> int:
        """Objects x frames whose half-precision near-tie was decided again in fp32."""
        return self.scorer.exact_decisions

    @property
    def mask_source(self) -> str:
        """Where masks come from: ``network`` (refined) or ``box`` (a box-only model: the filled box)."""
        return "network" if self.decoder.masks else "box"

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
        return self.net.flops_per_step()

    def with_preset(self, **changes: Any) -> Tracker:
        """Change hyper-parameters in place (e.g. for tuning) and return self."""
        self.preset = replace(self.preset, **changes)
        return self

    # objects ------------------------------------------------------------------------------
    def init(self, frame: np.ndarray, boxes: Sequence[float] | Sequence[Sequence[float]], *,
             color: str = "bgr") -> list[int]:
        """Start tracking the objects in ``boxes`` (x, y, w, h each); forgets earlier objects."""
        frame = check_frame(frame, color)
        if len(boxes) and not isinstance(boxes[0], Sequence | np.ndarray):
            boxes = [boxes]  # a single box
        if not len(boxes):
            raise SiamtrackError("init needs at least one box")
        self._timer.start()
        self._avg_chans = frame.mean(axis=(0, 1))
        self.states = []
        for box in boxes:  # a loop, not a comprehension: the clipping warning names init's caller
            self.states.append(self._new_state(box, (frame.shape[1], frame.shape[0])))
        self._kernels = self._template(frame, self.states)
        self.last_steps = []
        return list(range(len(self.states)))

    def reinit(self, frame: np.ndarray, obj_id: int, box: Sequence[float], *, color: str = "bgr") -> int:
        """Start object ``obj_id`` afresh at ``box`` on ``frame`` (a reviewer's correction: a new
        template, no memory of the old track), or add it when ``obj_id`` is the next free id (an
        object that enters later). Other objects are untouched; ids stay. Returns ``obj_id``."""
        if self._kernels is None:
            raise SiamtrackError("call init(frame, boxes) before reinit")
        if not 0 <= obj_id <= len(self.states):
            raise SiamtrackError(f"object {obj_id}: the tracker has objects 0..{len(self.states) - 1}; "
                                 f"a new one takes id {len(self.states)}")
        frame = check_frame(frame, color)
        self._timer.start()
        state = self._new_state(box, (frame.shape[1], frame.shape[0]))
        self._kernels = replace_row(self._kernels, obj_id, self._template(frame, [state]))
        self.states[obj_id:obj_id + 1] = [state]
        return obj_id

    def mark_lost(self, obj_id: int) -> None:
        """Declare an object lost (e.g. the caller knows it left): from the next frame on it is
        searched for as if the tracker had lost it (also how ``siamtrack bench --lost`` times a lost frame)."""
        st = self.states[obj_id]
        if st.machine is None:
            raise SiamtrackError("this preset has lost_state off: an object cannot be lost")
        st.machine.lose()
        st.restart_search()
        st.exits = []

    def _new_state(self, box: Sequence[float], frame_wh: tuple[int, int]) -> ObjectState:
        return start_state(box, frame_wh, self.style.center_offset, self.preset.state_machine())

    def _template(self, frame: np.ndarray, states: list[ObjectState]) -> Any:
        """The kernels of ``states`` cut from ``frame``."""
        sides = [self.style.exemplar_side(st.size, self.preset.context_amount) for st in states]
        z = self.net.crops(frame, [st.center for st in states], sides, geo.EXEMPLAR_SIZE,
                           self.style.pad_color(frame, self._avg_chans), self.style)
        self._timer.mark("crop")
        with self.net.inference():
            kernels = self.net.template(z)
        self._timer.mark("backbone")
        return kernels

    # tracking -----------------------------------------------------------------------------
    def track(self, frame: np.ndarray, *, color: str = "bgr") -> list[TrackResult]:
        """Advance every object by one frame.

        Objects not lost take the official step (one crop each, one batched network call);
        lost ones are searched for with up to ``preset.redetect_crops`` crops each.
        """
        if self._kernels is None:
            raise SiamtrackError("call init(frame, boxes) before track(frame)")
        frame = check_frame(frame, color)
        self._timer.start()
        self.last_steps = []
        lost = [i for i, st in enumerate(self.states) if st.machine is not None and st.machine.state == LOST]
        active = [i for i in range(len(self.states)) if i not in lost]
        results = self._step(frame, active) if active else {}
        if lost:
            results.update(self._search(frame, lost))
            self._timer.mark("search")
        if self._timer.enabled:  # otherwise stages are the last profiled call's, total included
            self._timer.stages["total"] = sum(self._timer.stages.values())
        return [results[i] for i in range(len(self.states))]

    def _score(self, frame: np.ndarray, owners: list[int], centers: list[np.ndarray], sides: list[float],
               sizes: list[np.ndarray]) -> tuple[list[tuple], np.ndarray, list[bool], Any]:
        return self.scorer.evaluate(frame, self._kernels, len(self.states), owners, centers, sides, sizes,
                                    self.style.pad_color(frame, self._avg_chans), self.style, self.preset)

    def _step(self, frame: np.ndarray, idx: list[int]) -> dict[int, TrackResult]:
        """The official step for objects ``idx``: crop at the last position, decode, refine, warp back."""
        states = [self.states[i] for i in idx]
        sides = [self.style.search_side(st.size, self.preset.context_amount) for st in states]
        picks, looks, usable, search = self._score(frame, idx, [st.center for st in states], sides,
                                                   [st.size for st in states])
        masks = self.scorer.masks(search, picks, list(range(len(idx))))
        self._timer.mark("refine")
        out = {}
        for j, i in enumerate(idx):
            ok = usable[j] and (masks[j] is None or finite(masks[j]))
            out[i] = self._finish(i, states[j], picks[j], masks[j], sides[j], frame, ok, looks[j])
        self._timer.mark("post")
        return out

    def _search(self, frame: np.ndarray, idx: list[int]) -> dict[int, TrackResult]:
        """Look for lost objects ``idx`` (``siamtrack.redetect``): no refine unless one is found.

        Each crop is scored as a normal step centred there would score it; the best candidate
        goes to the object's state machine, which confirms it only over several frames.
        """
        p, wh = self.preset, (frame.shape[1], frame.shape[0])
        owners, centers, sides = [], [], []
        for i in idx:
            st = self.states[i]
            side = self.style.search_side(st.good_size, p.context_amount)
            mine = search_crops(st, side, wh, p.redetect_crops, p.redetect)
            owners, centers, sides = owners + [i] * len(mine), centers + mine, sides + [side] * len(mine)
        picks, looks, usable, search = self._score(frame, owners, centers, sides,
                                                   [self.states[i].good_size for i in owners])
        best = best_candidates(owners, picks, usable, self.states)
        out: dict[int, TrackResult] = {}
        for i in idx:
            st = self.states[i]
            c, pick = best.get(i, (None, None))
            found, score = judge(st, pick, None if c is None else looks[c], p.found_score)
            if not found:
                out[i] = lost_result(i, wh, score)
                continue
            (mask,) = self.scorer.masks(search, picks, [c])
            st.found_at(centers[c])
            out[i] = self._finish(i, st, pick, mask, sides[c], frame, mask is None or finite(mask), looks[c])
        return out

    def _finish(self, i: int, st: ObjectState, pick: tuple, mask127: np.ndarray | None, side: float,
                frame: np.ndarray, ok: bool, look: np.ndarray) -> TrackResult:
        """Update object ``i``'s state machine and state from its pick; its result for this frame."""
        best, row, col, center, size, best_score, debug, (mask_row, mask_col) = pick
        wh = (frame.shape[1], frame.shape[0])
        box = geo.crop_box(st.center, side)
        self.last_steps.append(StepRecord(best, row, col, box, *debug, mask127, center, size, (mask_row, mask_col)))
        state = st.observe(best_score, ok, look)
        if state == LOST:
            st.lost_at(center, best_score, wh)
            return lost_result(i, wh, best_score)
        clipped = geo.clip_state(center, size, wh)
        window = None if mask127 is None else self.decoder.mask_window(box, mask_row, mask_col)
        binary, prob, rotated, source, region = frame_outputs(
            mask127, window, clipped if self.style.clip_first or mask127 is None else (center, size), wh,
            self.preset.seg_thr, self.style.mask_pad)
        st.moved_to(*clipped, best_score, state == TRACKED, look)
        box = output_box(geo.center_to_xywh(st.center, st.size), binary, prob, source, self.preset.mask_box,
                         region)
        return TrackResult(i, box, rotated, binary, prob, best_score, source, state)
