"""Options and helpers shared by the commands: boxes, model choice, output folders, progress, signals.

Nothing heavy is imported at module level, so ``siamtrack --help`` stays instant.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import click

from siamtrack.choices import BACKEND_PRECISIONS, BACKENDS, DEVICES, PRECISIONS, PRESET_VALUES
from siamtrack.errors import SiamtrackError

if TYPE_CHECKING:
    from siamtrack.results import ObjectTracker

Box = tuple[float, float, float, float]


def parse_bbox(text: str) -> Box:
    """``x,y,w,h`` (commas and/or spaces) -> floats; a click error naming --bbox otherwise."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not x,y,w,h (four numbers)", param_hint="--bbox") from None
    if len(values) != 4:
        raise click.BadParameter(f"{text!r} has {len(values)} numbers; expected x,y,w,h", param_hint="--bbox")
    if not all(math.isfinite(v) for v in values):
        raise click.BadParameter(f"{text!r} is not x,y,w,h (four finite numbers)", param_hint="--bbox")
    if values[2] <= 0 or values[3] <= 0:
        raise click.BadParameter(f"{text!r} has zero or negative width/height", param_hint="--bbox")
    return values  # type: ignore[return-value]


def bbox_option(required: bool = False) -> Callable:
    return click.option("--bbox", "bboxes", multiple=True, required=required, metavar="X,Y,W,H",
                        help="Box on the first frame (pixels, top-left corner); repeat for several objects.")


def model_options(func: Callable) -> Callable:
    """--model / --checkpoint / --preset / --device / --precision / --backend."""
    options = [
        click.option("--model", default=None, metavar="NAME",
                     help="Registry model (see `siamtrack weights list`); default: the registry's default."),
        click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
                     help="A checkpoint file to use instead of a registry model."),
        click.option("--preset", type=click.Choice(list(PRESET_VALUES)), default=None,
                     help="Tracking hyper-parameters (default: the model's own)."),
        click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True),
        click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
                     help="Network precision (see the README); int8 needs --backend onnxruntime."),
        click.option("--backend", type=click.Choice(BACKENDS), default="torch", show_default=True,
                     help="What runs the network: torch, or ONNX Runtime on the CPU (exported on first use).")
    ]

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        check_backend(kwargs["backend"], kwargs["precision"], kwargs["device"])  # before any file is opened
        return func(*args, **kwargs)

    for opt in reversed(options):
        checked = opt(checked)
    return checked


def lost_options(func: Callable) -> Callable:
    """--lost-score / --uncertain-score / --found-score / --redetect-crops / --no-redetect / --no-lost-state.

    The command receives them as one ``lost`` dict of preset changes (only those given), for
    ``make_tracker``; unset, the preset's own (tuned) values hold.
    """
    names = ("lost_score", "uncertain_score", "found_score", "redetect_crops", "no_redetect", "no_lost_state")
    unit = click.FloatRange(0.0, 1.0)
    options = [
        click.option("--lost-score", type=unit, default=None,
                     help="Score under which a frame counts as a miss; misses in a row make an object lost."),
        click.option("--uncertain-score", type=unit, default=None,
                     help="Score under which an object is flagged uncertain (still drawn)."),
        click.option("--found-score", type=unit, default=None,
                     help="Score a re-detection candidate needs, on consecutive frames, to end 'lost'."),
        click.option("--redetect-crops", type=click.IntRange(1, 16), default=None,
                     help="Search crops per lost object per frame (the cost of a lost frame)."),
        click.option("--no-redetect", is_flag=True,
                     help="While lost, search only where the object was last seen."),
        click.option("--no-lost-state", is_flag=True,
                     help="Never report an object lost: always draw a mask, as the official code does."),
    ]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {n: kwargs.pop(n) for n in names}
        lost = {k: v for k, v in given.items() if k in names[:4] and v is not None}
        if given["no_redetect"]:
            lost["redetect"] = False
        if given["no_lost_state"]:
            lost["lost_state"] = False
        return func(*args, lost=lost, **kwargs)

    for opt in reversed(options):
        wrapper = opt(wrapper)
    return wrapper


def dataset_options(func: Callable) -> Callable:
    """--label / --frames / --polygons / --boxes / --polygon-tolerance of the training-set exports,
    received as one ``dataset`` (a ``siamtrack.io.labels.DatasetOptions``)."""
    options = [
        click.option("--label", "labels", multiple=True, metavar="NAME",
                     help="Class name of the objects (once for all, or once per --bbox, in order); default: object."),
        click.option("--frames", "frame_type", type=click.Choice(["jpg", "png", "none"]), default=None,
                     help="Frame images written beside the labels (default: jpg; none: labels only)."),
        click.option("--polygons", is_flag=True, help="COCO: polygons instead of compressed RLE."),
        click.option("--boxes", is_flag=True, help="CVAT: boxes instead of polygons."),
        click.option("--polygon-tolerance", type=click.FloatRange(min=0), default=None,
                     help="Pixels a polygon may deviate from the mask outline (Douglas-Peucker; default 1; 0: "
                          "exact); an outline that would fall under mask IoU 0.98 is written exact."),
    ]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from siamtrack.io.labels import DEFAULT_TOLERANCE, DatasetOptions

        tolerance = kwargs.pop("polygon_tolerance")
        dataset = DatasetOptions(tuple(kwargs.pop("labels")), kwargs.pop("frame_type"), kwargs.pop("polygons"),
                                 kwargs.pop("boxes"), DEFAULT_TOLERANCE if tolerance is None else tolerance)
        return func(*args, dataset=dataset, **kwargs)

    for opt in reversed(options):
        wrapper = opt(wrapper)
    return wrapper


def keyframes_option(func: Callable) -> Callable:
    return click.option("--keyframes", "keyframes_file", type=click.Path(exists=True, dir_okay=False), default=None,
                        help="JSON or CSV of corrections (frame, object, x, y, w, h): re-initialise the object "
                             "there, keeping its id; a new id adds an object that enters later.")(func)


def load_keyframes(path: str | None, n_objects: int, start: int, frames: int | None) -> dict | None:
    """The keyframe schedule of ``--keyframes`` for ``track_stream``, checked against the video
    (one-line errors before any work); None without the option."""
    if path is None:
        return None
    from siamtrack.keyframes import check_keyframes, keyframe_schedule, read_keyframes

    keyframes = read_keyframes(path)
    check_keyframes(keyframes, n_objects, start, frames)
    return keyframe_schedule(keyframes)


def check_backend(backend: str, precision: str, device: str = "auto") -> None:
    """A usage error for a precision or device the backend does not run, or a device this machine
    lacks (before anything is loaded)."""
    if precision not in BACKEND_PRECISIONS[backend]:
        hint = "int8 needs --backend onnxruntime" if precision == "int8" else (
            f"the {backend} backend runs {', '.join(BACKEND_PRECISIONS[backend])}")
        raise click.BadParameter(f"{precision}: {hint}", param_hint="--precision")
    if backend == "onnxruntime" and device not in ("auto", "cpu"):
        raise click.BadParameter("the onnxruntime backend runs on the CPU", param_hint="--device")
    check_device(device)


def check_device(device: str) -> None:
    """A one-line error for ``--device cuda`` without a CUDA device, before any file or camera is
    opened; torch is imported only for an explicit device, so the other commands start as fast."""
    if device in ("auto", "cpu"):
        return
    from siamtrack.backends import resolve_device

    try:
        resolve_device(device)
    except SiamtrackError as exc:
        raise click.ClickException(str(exc)) from None


def threads_option(help_text: str = "Torch and OpenCV threads (default: one per core).") -> Callable:
    return click.option("--threads", type=click.IntRange(min=1), default=None, help=help_text)


def executor_options(func: Callable) -> Callable:
    """--workers / --threads / --executor / --ray-address / --gpus-per-worker, received as one
    ``parallel`` dict (keys ``workers``, ``threads``, ``executor``, ``address``, ``gpus``)."""
    from siamtrack.executors import EXECUTORS

    options = [
        click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Videos tracked at once: worker processes (local) or Ray actors; 1 tracks in this process."),
        threads_option("Torch and OpenCV threads per worker (default: cores // workers)."),
        click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
                     help="local: processes on this machine; ray: Ray tasks (pip install 'siamtrack[ray]')."),
        click.option("--ray-address", default=None, metavar="ADDR",
                     help="With --executor ray: an existing cluster (default: a local Ray instance)."),
        click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=None,
                     help="With --executor ray: GPUs each worker asks for (default: 1 with --device cuda, else 0)."),
    ]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        parallel = {"workers": kwargs.pop("workers"), "threads": kwargs.pop("threads"),
                    "executor": kwargs.pop("executor"), "address": kwargs.pop("ray_address"),
                    "gpus": kwargs.pop("gpus_per_worker")}
        if parallel["executor"] != "ray":
            named = (("--ray-address", "address"), ("--gpus-per-worker", "gpus"))
            given = [option for option, key in named if parallel[key] is not None]
            if given:
                raise click.UsageError(f"{given[0]} needs --executor ray")
        return func(*args, parallel=parallel, **kwargs)

    for opt in reversed(options):
        wrapper = opt(wrapper)
    return wrapper


def make_executor(parallel: dict[str, Any], factory: Callable[[], ObjectTracker], device: str) -> Any:
    """The executor of ``executor_options``; a local one validates the model here first (one
    line before any work) and, with one worker, tracks with it in this process."""
    from siamtrack.executors import make_executor as build

    tracker = factory() if parallel["executor"] == "local" else None
    gpus = parallel["gpus"] if parallel["gpus"] is not None else (1.0 if device == "cuda" else 0.0)
    return build(parallel["executor"], factory, workers=parallel["workers"], threads=parallel["threads"],
                 tracker=tracker, gpus=gpus, address=parallel["address"])


def make_tracker(model: str | None, checkpoint: str | None, preset: str | None, device: str, precision: str,
                 lost: dict[str, Any] | None = None, backend: str = "torch") -> ObjectTracker:
    """The tracker the options ask for (torch is imported here, not at CLI start-up); ``lost``:
    lost-target preset changes from ``lost_options``."""
    if model and checkpoint:
        raise click.UsageError("give --model or --checkpoint, not both")
    check_backend(backend, precision, device)
    from siamtrack.api import from_checkpoint, from_pretrained

    if checkpoint:
        tracker = from_checkpoint(checkpoint, preset=preset, device=device, precision=precision, backend=backend)
    else:
        tracker = from_pretrained(model, preset=preset, device=device, precision=precision, backend=backend)
    if lost:
        changed = {**tracker.preset.to_dict(), **lost}
        if changed["lost_score"] > changed["uncertain_score"]:
            raise click.BadParameter(f"--lost-score ({changed['lost_score']}) is above --uncertain-score "
                                     f"({changed['uncertain_score']})", param_hint="--lost-score")
        tracker.with_preset(**lost)
    return tracker


def has_display() -> bool:
    """Whether a window can be opened (on Linux: an X11 or Wayland display is set)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def select_boxes(frame: Any, title: str = "siamtrack: drag boxes (Enter after each), Esc to start") -> list[Box]:
    """Interactive selection of one or several boxes on a frame (OpenCV window)."""
    if not has_display():
        raise SiamtrackError("no display for interactive selection; pass the box with --bbox x,y,w,h")
    import cv2

    try:
        rois = cv2.selectROIs(title, frame, showCrosshair=True, fromCenter=False)
    except cv2.error as exc:
        raise SiamtrackError(f"cannot open a window for selection ({exc.err}); pass --bbox x,y,w,h") from None
    finally:
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(title)
    boxes = [tuple(float(v) for v in r) for r in rois if r[2] > 0 and r[3] > 0]
    if not boxes:
        raise SiamtrackError("no box was selected")
    return boxes  # type: ignore[return-value]


def init_tracker(tracker: ObjectTracker, frame: Any, boxes: Sequence[Box]) -> list[int]:
    """``tracker.init`` with its warnings (a box clipped to the frame) printed as one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = tracker.init(frame, [tuple(b) for b in boxes])
    for w in caught:
        echo_warning(str(w.message))
    return ids


def echo_warning(message: str) -> None:
    """A warning as one line on stderr."""
    click.echo(f"Warning: {message}", err=True)


def open_input(spec: str) -> Any:
    """``open_source`` for a command: what the user should know about the source (a rotated
    video) is printed once, as a warning line."""
    from siamtrack.io.sources import open_source

    src = open_source(spec)
    note = src.notice()
    if note:
        echo_warning(note)
    return src


def echo_fit(fit: dict[str, Any], tolerance: float) -> None:
    """How closely the exported polygons follow the masks, as one line on stderr."""
    click.echo(f"Polygons (tolerance {tolerance:g} px) vs masks: mean IoU {fit['mean_iou']:.4f}, min "
               f"{fit['min_iou']:.4f} over {fit['masks']} masks ({fit['unsimplified']} kept unsimplified, "
               f"{fit['below_0.98']} below 0.98)", err=True)


def first_frame(frames: Iterator) -> Any:
    try:
        return next(frames)
    except StopIteration:
        raise SiamtrackError("the source has no frames (at the requested start)") from None


def console(stderr: bool = False) -> Any:
    """A rich console at least 160 columns wide, so tables are not truncated when piped."""
    from rich.console import Console

    return Console(stderr=stderr, width=max(Console(stderr=stderr).width, 160))


class Progress:
    """A rich progress bar on stderr (frames, fps, elapsed, ETA); silent when ``quiet``.

    The bar appears with the first frame done, so errors of the set-up print alone.
    """

    def __init__(self, total: int | None, quiet: bool, label: str = "tracking") -> None:
        self.quiet = quiet
        self.done = 0
        self.t0: float | None = None
        self.t_last: float | None = None
        self._base = 0
        self._shown = False
        if not quiet:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                                    TextColumn("{task.fields[fps]} fps"), TimeElapsedColumn(), TimeRemainingColumn(),
                                    console=Console(stderr=True))
            self.task = self.bar.add_task(label, total=total, fps="-")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._shown:
            self.bar.__exit__(*exc)

    def start(self) -> None:
        """Start the clock: frames done so far (the initialisation) are not counted in ``fps``."""
        self.t0 = time.perf_counter()
        self._base = self.done

    def advance(self, n: int = 1) -> None:
        self.done += n
        self.t_last = time.perf_counter()
        if not self.quiet:
            if not self._shown:
                self.bar.__enter__()
                self._shown = True
            self.bar.update(self.task, advance=n, fps=f"{self.fps:.1f}")

    @property
    def fps(self) -> float:
        """Frames per second since ``start``."""
        if self.t0 is None or self.t_last is None or self.t_last <= self.t0:
            return 0.0
        return (self.done - self._base) / (self.t_last - self.t0)


def summary_table(title: str, rows: list[tuple[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for k, v in rows:
        table.add_row(k, str(v))
    console(stderr=True).print(table)


def user_errors(func: Callable) -> Callable:
    """Turn SiamtrackError into a click error (one line, exit code 1) inside a command."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SiamtrackError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper
