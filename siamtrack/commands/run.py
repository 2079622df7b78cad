"""``siamtrack run``: track objects through a video; annotated video, mask PNGs, tracks.json and,
with ``--export``, a training set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from siamtrack.choices import DATASET_FORMATS
from siamtrack.commands._common import (
    bbox_option,
    dataset_options,
    keyframes_option,
    lost_options,
    model_options,
    threads_option,
    user_errors,
)


@click.command()
@click.argument("source")
@bbox_option()
@model_options
@lost_options
@threads_option()
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Output folder (default: a new numbered runs/<source-name> folder).")
@click.option("--overwrite", is_flag=True, help="Allow writing into an existing, non-empty --out folder.")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True,
              help="Index of the frame the boxes are drawn on.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after this many frames.")
@click.option("--no-video", is_flag=True, help="Do not write annotated.mp4.")
@click.option("--no-masks", is_flag=True, help="Do not write mask PNGs.")
@click.option("--export", type=click.Choice(DATASET_FORMATS), default=None,
              help="Also write a training set of this format into <out>/<format>/ (see export-masks).")
@dataset_options
@keyframes_option
@click.option("--show", is_flag=True, help="Show the annotated frames in a window while tracking (q or Esc stops).")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
@user_errors
def run(source: str, bboxes: tuple[str, ...], model: str | None, checkpoint: str | None, preset: str | None,
        device: str, precision: str, backend: str, threads: int | None, out: str | None, overwrite: bool,
        start: int, max_frames: int | None, no_video: bool, no_masks: bool, export: str | None,
        keyframes_file: str | None, show: bool, quiet: bool, lost: dict, dataset: Any) -> None:
    """Track and segment objects in SOURCE: a video file, an image folder or a glob.

    \b
    Examples:
      siamtrack run video.mp4 --bbox 305,112,165,250
      siamtrack run frames/ --bbox 10,20,50,60 --bbox 200,80,40,90 --out results
      siamtrack run "clip/*.jpg" --model siammask-davis --preset davis --max-frames 100
      siamtrack run video.mp4 --bbox 305,112,165,250 --label dog --export yolo --keyframes fixes.csv

    Writes annotated.mp4, masks/<object>/<frame>.png and tracks.json into the output folder
    and prints its path. Without --bbox, boxes are drawn on the first frame in a window.
    --export FORMAT adds a training set in <out>/FORMAT/ (the annotated video shows what it
    holds); --keyframes re-initialises objects where a reviewer corrected them.
    Ctrl-C stops early and keeps valid outputs for the frames done.
    """
    import contextlib

    from siamtrack.commands._common import (
        first_frame,
        has_display,
        load_keyframes,
        make_tracker,
        open_input,
        parse_bbox,
        select_boxes,
    )
    from siamtrack.keyframes import object_count
    from siamtrack.runs import RUN_OUTPUTS, OutDir

    boxes = [parse_bbox(b) for b in bboxes]
    dataset.check(export)
    if show and not has_display():
        raise click.UsageError("--show needs a display")
    src = open_input(source)
    out_dir = OutDir(out, src.name, overwrite, owned=RUN_OUTPUTS)
    frames = src.frames(start, max_frames)
    with contextlib.closing(frames):  # the decoder stops if selection or model loading fails
        first = first_frame(frames)
        if not boxes:
            boxes = select_boxes(first.image)
        keyframes = load_keyframes(keyframes_file, len(boxes), first.index, src.expected(start, max_frames))
        dataset.check(export, object_count(len(boxes), keyframes))
        if threads is not None:
            from siamtrack.executors import set_threads

            set_threads(threads)
        tracker = make_tracker(model, checkpoint, preset, device, precision, lost, backend)
        track_video(tracker, src, frames, first, boxes, out_dir, source_label=source, video=not no_video,
                    masks=not no_masks, show=show, quiet=quiet, total=src.expected(start, max_frames),
                    export=export, dataset=dataset, keyframes=keyframes)


def track_video(tracker: Any, src: Any, frames: Any, first: Any, boxes: list, out_dir: Any, *, source_label: str,
                video: bool = True, masks: bool = True, show: bool = False, quiet: bool = False,
                total: int | None = None, export: str | None = None, dataset: Any = None,
                keyframes: dict | None = None) -> Path:
    """``run``'s outputs for one source (shared with ``demo`` and the headless ``webcam``): the
    streaming loop into ``RunOutputs``, with a progress bar, a summary and the exit status.

    Decoding (a thread), tracking (this thread) and writing (a thread, plus FFmpeg) overlap;
    queues are bounded, so memory does not grow with the video. The output folder is created
    only once the tracker has accepted the boxes. Ctrl-C or SIGTERM stop the loop; the
    outputs are finalised for the frames done and the exit code is 128 + the signal.
    """
    from siamtrack.commands._common import Progress, echo_warning
    from siamtrack.io.sinks import render
    from siamtrack.runs import track_to_folder

    def on_frame(frame: Any, results: list) -> Any:
        return _show(render(frame.image, results))

    progress = Progress(total, quiet)
    try:
        with progress:
            summary = track_to_folder(tracker, src, frames, boxes, out_dir, source_label=source_label, video=video,
                                      masks=masks, first=first, progress=progress,
                                      on_frame=on_frame if show else None, warn=echo_warning, export=export,
                                      dataset=dataset, keyframes=keyframes)
    finally:
        if show:
            _close_window()
    path = out_dir.path
    outputs = summary.outputs
    if not quiet:
        _summary(tracker, outputs, summary.fps, len(boxes), path, summary.interrupted)
        fit = (outputs.get("dataset") or {}).get("polygon_fit")
        if fit:
            from siamtrack.commands._common import echo_fit

            echo_fit(fit, dataset.tolerance)
    click.echo(str(path))
    if summary.interrupted:
        click.echo(f"Interrupted: {path} holds the {outputs['frames']} frames done.", err=True)
        raise SystemExit(summary.exit_code)
    return path


def _show(annotated: Any) -> Any:
    """Display a frame; q or Esc stops the run like Ctrl-C."""
    import cv2

    cv2.imshow("siamtrack", annotated)
    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
        raise KeyboardInterrupt
    return annotated


def _close_window() -> None:
    import cv2

    cv2.destroyAllWindows()


def _summary(tracker: Any, summary: dict, fps: float, n_objects: int, path: Path, interrupted: bool) -> None:
    from siamtrack.commands._common import summary_table

    rows: list[tuple[str, Any]] = [("frames", summary["frames"]), ("objects", n_objects), ("fps", f"{fps:.1f}"),
                                   ("model", tracker.model_name), ("precision", tracker.precision),
                                   ("backend", getattr(tracker, "backend", "torch")),
                                   ("device", tracker.device), ("tracks", summary["tracks"])]
    if summary["video"] is not None:
        rows.append(("video", summary["video"]))
    if summary["mask_pngs"]:
        rows.append(("mask PNGs", f"{summary['mask_pngs']} in {path / 'masks'}"))
    if summary.get("dataset"):
        rows.append(("dataset", f"{summary['dataset']['annotations']} labels in {summary['dataset']['dataset']}"))
    summary_table("siamtrack run" + (" (interrupted)" if interrupted else ""), rows)
