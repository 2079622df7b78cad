"""Options and helpers shared by the commands: boxes, model choice, run folders, the tracking loop."""

from __future__ import annotations

import functools
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from siamtrack.errors import SiamtrackError


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``x,y,w,h`` (commas or spaces) -> floats; a click error otherwise."""
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not x,y,w,h (four numbers)", param_hint="--bbox") from None
    if len(values) != 4:
        raise click.BadParameter(f"{text!r} has {len(values)} numbers; expected x,y,w,h", param_hint="--bbox")
    if values[2] <= 0 or values[3] <= 0:
        raise click.BadParameter(f"{text!r} has zero or negative width/height", param_hint="--bbox")
    return values


def bbox_option(required: bool = False) -> Callable:
    return click.option("--bbox", "bboxes", multiple=True, required=required, metavar="X,Y,W,H",
                        help="Initial box on the first frame; repeat for several objects.")


def model_options(func: Callable) -> Callable:
    """--model / --checkpoint / --preset / --device / --precision."""
    options = [
        click.option("--model", default=None, metavar="NAME",
                     help="Registry model (see `siamtrack weights list`); default: the shipped siammask-lite."),
        click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
                     help="A checkpoint file to use instead of a registry model."),
        click.option("--preset", type=click.Choice(["davis", "vot", "vot18", "pysot"]), default=None,
                     help="Tracking hyper-parameters (default: the model's own)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--precision", type=click.Choice(["auto", "fp32", "fp32-reference", "bf16", "fp16"]),
                     default="auto", show_default=True, help="Network precision (see the README)."),
    ]
    for opt in reversed(options):
        func = opt(func)
    return func


def make_tracker(model: str | None, checkpoint: str | None, preset: str | None, device: str, precision: str):
    """The tracker the options ask for (torch is imported here, not at CLI start-up)."""
    from siamtrack.tracker import Tracker

    if model and checkpoint:
        raise click.UsageError("give --model or --checkpoint, not both")
    if checkpoint:
        return Tracker.from_checkpoint(checkpoint, preset=preset, device=device, precision=precision)
    return Tracker.from_pretrained(model, preset=preset, device=device, precision=precision)


def has_display() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def select_boxes(frame, title: str = "siamtrack: draw boxes, Enter to start") -> list[tuple[float, ...]]:
    """Interactive selection of one or several boxes on a frame (OpenCV window)."""
    if not has_display():
        raise SiamtrackError("no display for interactive selection; pass the box with --bbox x,y,w,h")
    import cv2

    try:
        rois = cv2.selectROIs(title, frame, showCrosshair=True, fromCenter=False)
    except cv2.error as exc:
        raise SiamtrackError(f"cannot open a window for selection ({exc.err}); pass --bbox x,y,w,h") from None
    finally:
        cv2.destroyAllWindows()
    boxes = [tuple(float(v) for v in r) for r in rois if r[2] > 0 and r[3] > 0]
    if not boxes:
        raise SiamtrackError("no box was selected")
    return boxes


def new_run_dir(name: str, root: Path = Path("runs")) -> Path:
    """``runs/<name>``, or ``runs/<name>2``, ``runs/<name>3``... whichever is free (never reused)."""
    base = root / name
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{name}{n}"
    return candidate


def prepare_out_dir(out: str | None, name: str, overwrite: bool) -> Path:
    """Validate the output folder choice without creating anything yet."""
    if out is None:
        return new_run_dir(name)
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise SiamtrackError(f"{path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise SiamtrackError(f"{path} already holds files; pass --overwrite to write into it")
    return path


def create_out_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise SiamtrackError(f"cannot write to {path} ({exc.strerror})") from None
    return path


def init_tracker(tracker, frame, boxes) -> None:
    """``tracker.init`` with clipping warnings printed as one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker.init(frame, list(boxes))
    for w in caught:
        click.echo(f"Warning: {w.message}", err=True)


class Progress:
    """A rich progress bar with frames, fps and ETA (silent when quiet)."""

    def __init__(self, total: int | None, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()
        self.done = 0
        if not quiet:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("tracking"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[fps]} fps"), TimeElapsedColumn(), TimeRemainingColumn(),
                                transient=False)
            self.task = self.bar.add_task("track", total=total, fps="-")

    def __enter__(self) -> Progress:
        if not self.quiet:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if not self.quiet:
            self.bar.__exit__(*exc)

    def advance(self) -> None:
        self.done += 1
        if not self.quiet:
            self.bar.update(self.task, advance=1, fps=f"{self.fps:.1f}")

    @property
    def fps(self) -> float:
        return self.done / max(time.perf_counter() - self.t0, 1e-9)


def console(stderr: bool = False):
    """A rich console at least 160 columns wide, so tables are not truncated when piped."""
    from rich.console import Console

    return Console(stderr=stderr, width=max(Console().width, 160))


def summary_table(title: str, rows: list[tuple[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for k, v in rows:
        table.add_row(k, str(v))
    console(stderr=True).print(table)


def first_frame(frames: Iterator) -> Any:
    try:
        return next(frames)
    except StopIteration:
        raise SiamtrackError("the source has no frames (at the requested start)") from None


def user_errors(func: Callable) -> Callable:
    """Turn SiamtrackError into a click error (one line, exit code 1) inside a command."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SiamtrackError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper
