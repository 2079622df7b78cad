"""One video through a tracker into sinks: the streaming loop behind ``run``, ``export-masks``
and the headless ``webcam``, written as a plain function so that a command tracking many
videos calls it once per video.

Data goes one way: frames from a source, results from the tracker, (frame, results) to a
sink. The function owns the frame iterator it is given and closes it however it ends, so a
decoding thread and its FFmpeg process never outlive a failed run. Ctrl-C and SIGTERM (or
SIGHUP) stop the loop after the current frame; the sink is then closed with the signals
that would interrupt it deferred, so a second SIGTERM cannot cut a finalisation short.
"""

from __future__ import annotations

import contextlib
import signal
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from siamtrack.errors import SiamtrackError, SourceError
from siamtrack.io.sources import Frame

__all__ = ["Sink", "Start", "StreamSummary", "deferred_signals", "given_result", "init_results", "stop_on_signals",
           "track_stream"]

Box = tuple[float, float, float, float]
STOP_SIGNALS = tuple(getattr(signal, s) for s in ("SIGTERM", "SIGHUP") if hasattr(signal, s))
_deferring = 0  # > 0 while a sink is being finalised: stop signals are recorded, not raised


class Sink(Protocol):
    """Where a stream's frames go: ``RunOutputs``, ``MaskOutputs``, or anything alike."""

    def write(self, index: int, timestamp: float, image: np.ndarray, results: Sequence[Any],
              annotated: np.ndarray | None = None) -> None: ...

    def close(self, extra_meta: dict[str, Any] | None = None) -> dict[str, Any]: ...


class Progress(Protocol):
    def start(self) -> None: ...

    def advance(self, n: int = 1) -> None: ...


@dataclass(frozen=True)
class Start:
    """What is known once the tracker has accepted the boxes, and what a sink is opened with."""

    first: Frame
    obj_ids: list[int]
    boxes: list[Box]  # clipped to the frame
    size: tuple[int, int]  # w, h


@dataclass
class StreamSummary:
    """How a stream ended: frames written, whether (and by which signal) it was stopped, speed."""

    start: Start
    frames: int
    interrupted: bool
    signal: int | None  # the stop signal (SIGTERM, SIGHUP) that arrived, if any; None for Ctrl-C or q
    fps: float  # frames per second of the loop after the first frame
    outputs: dict[str, Any] = field(default_factory=dict)  # what the sink's close returned

    @property
    def exit_code(self) -> int:
        """0, or 128 + the signal that stopped the stream, as shells report (130 for Ctrl-C)."""
        if not self.interrupted:
            return 0
        return 128 + (self.signal or signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[dict[str, int]]:
    """Within the block, SIGTERM and SIGHUP raise KeyboardInterrupt as Ctrl-C does (unless
    deferred), so ``finally`` blocks finalise outputs; yields ``{"signal": n}`` once one arrived.

    Off the main thread signals cannot be handled; they are then left alone.
    """
    got: dict[str, int] = {}
    previous: dict[int, Any] = {}

    def handler(signum: int, _frame: Any) -> None:
        got.setdefault("signal", signum)
        if not _deferring:
            raise KeyboardInterrupt

    try:
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread
        previous.clear()
    try:
        yield got
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Within the block, stop signals are recorded but do not interrupt (finalising outputs)."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1


def given_result(obj_id: int, box: Box, shape: tuple[int, int], source: str = "init") -> Any:
    """An object at a box it was given (the first frame, a keyframe): the box filled as its mask,
    score 1, ``polygon_source`` saying which (outputs flag these frames as not predicted)."""
    from siamtrack.geometry import RotatedBox, box_corners, box_mask
    from siamtrack.results import TrackResult

    x, y, w, h = box
    center = (x + w / 2, y + h / 2)
    rotated = RotatedBox(box_corners(center, (w, h)), center[0], center[1], w, h, 0.0)
    mask = box_mask(shape, (x, y, w, h))
    return TrackResult(obj_id, (x, y, w, h), rotated, mask, mask.astype("float32"), 1.0, source)


def init_results(obj_ids: Sequence[int], boxes: Sequence[Box], shape: tuple[int, int]) -> list[Any]:
    """Results of the first frame: each object's (clipped) initial box, filled as its mask, score 1."""
    return [given_result(obj_id, box, shape) for obj_id, box in zip(obj_ids, boxes, strict=True)]


def _apply_keyframes(tracker: Any, frame: Frame, results: list[Any], fixes: Sequence[tuple[int, Box]],
                     warn: Callable[[str], None]) -> list[Any]:
    """Re-initialise the objects of this frame's keyframes; their results become the given boxes."""
    from siamtrack.results import clip_box

    by_id = {r.obj_id: r for r in results}
    size = (frame.image.shape[1], frame.image.shape[0])
    for obj_id, box in fixes:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tracker.reinit(frame.image, obj_id, box)
        for w in caught:
            warn(f"keyframe at frame {frame.index}: {w.message}")
        by_id[obj_id] = given_result(obj_id, clip_box(box, size)[0], frame.image.shape[:2], "keyframe")
    return [by_id[k] for k in sorted(by_id)]


def _init(tracker: Any, first: Frame, boxes: Sequence[Box], warn: Callable[[str], None]) -> Start:
    from siamtrack.results import clip_box

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obj_ids = list(tracker.init(first.image, [tuple(b) for b in boxes]))
    for w in caught:
        warn(str(w.message))
    size = (first.image.shape[1], first.image.shape[0])
    return Start(first, obj_ids, [clip_box(b, size)[0] for b in boxes], size)


def track_stream(tracker: Any, frames: Iterator[Frame], boxes: Sequence[Box], open_sink: Callable[[Start], Sink], *,
                 first: Frame | None = None, on_frame: Callable[[Frame, list[Any]], np.ndarray | None] | None = None,
                 progress: Progress | None = None,
                 warn: Callable[[str], None] = lambda message: warnings.warn(message, stacklevel=3),
                 keyframes: Mapping[int, Sequence[tuple[int, Box]]] | None = None) -> StreamSummary:
    """Initialise ``tracker`` on the first frame, track every later one, hand each to the sink.

    ``frames`` is closed however this ends. ``first``: the first frame when the caller has
    already taken it from ``frames`` (to draw boxes on it). ``open_sink`` is called once the
    tracker has accepted the boxes, so nothing is created for a run that fails before.
    ``on_frame`` sees each tracked frame and may return it drawn (then not drawn again);
    it stops the stream by raising KeyboardInterrupt. Warnings of the initialisation (a box
    clipped to the frame) go to ``warn``. ``keyframes``: frame index -> (object, box) pairs to
    re-initialise there (``siamtrack.keyframes``; the tracker needs ``reinit``). Errors of the
    source, tracker or sink propagate after the sink has been closed on the frames done.
    """
    with contextlib.closing(frames), stop_on_signals() as got:  # type: ignore[type-var]
        if first is None:
            first = next(frames, None)
            if first is None:
                raise SourceError("the source has no frames (at the requested start)")
        if keyframes and not callable(getattr(tracker, "reinit", None)):
            raise SiamtrackError(f"{getattr(tracker, 'model_name', type(tracker).__name__)} cannot take keyframes "
                                 f"(it has no reinit)")
        start = _init(tracker, first, boxes, warn)
        sink = open_sink(start)
        done, interrupted, t0, t_last = 0, False, None, None
        try:
            try:
                sink.write(first.index, first.timestamp, first.image, init_results(start.obj_ids, start.boxes,
                                                                                    first.image.shape[:2]))
                done += 1
                if progress is not None:
                    progress.advance()
                    progress.start()
                t0 = time.perf_counter()
                for frame in frames:
                    results = tracker.track(frame.image)
                    fixes = keyframes.get(frame.index) if keyframes else None
                    if fixes:
                        results = _apply_keyframes(tracker, frame, results, fixes, warn)
                    annotated = on_frame(frame, results) if on_frame is not None else None
                    sink.write(frame.index, frame.timestamp, frame.image, results, annotated)
                    done += 1
                    t_last = time.perf_counter()
                    if progress is not None:
                        progress.advance()
            except KeyboardInterrupt:
                interrupted = True
        finally:
            fps = (done - 1) / (t_last - t0) if t0 is not None and t_last is not None and t_last > t0 else 0.0
            with deferred_signals():
                outputs = sink.close({"tracking_fps": round(fps, 3), "interrupted": interrupted})
    return StreamSummary(start, done, interrupted, got.get("signal"), fps, outputs)
