"""``siamtrack export-masks``: masks (PNG per object, DAVIS palette, npz) or a training set (COCO,
YouTube-VIS, YOLO, CVAT, MOT), no video encoding."""

from __future__ import annotations

from typing import Any

import click

from siamtrack.choices import DATASET_FORMATS
from siamtrack.commands._common import (
    bbox_option,
    dataset_options,
    keyframes_option,
    lost_options,
    model_options,
    user_errors,
)

MASK_FORMATS = ("png", "davis", "npz")
FORMATS = MASK_FORMATS + DATASET_FORMATS


@click.command("export-masks")
@click.argument("source")
@bbox_option(required=True)
@model_options
@lost_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="png", show_default=True,
              help="png: <out>/<object>/<frame>.png 0/255; davis: <out>/<frame>.png palette with ids 1..K; "
                   "npz: <out>/<frame>.npz (masks, ids); coco, ytvis, yolo, cvat, mot: a training set "
                   "with its frames (see docs/cli.md, Label a dataset).")
@dataset_options
@keyframes_option
@click.option("--overwrite", is_flag=True, help="Allow writing into a non-empty --out folder.")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True,
              help="Index of the frame the boxes are drawn on.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after this many frames.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def export_masks(source: str, bboxes: tuple[str, ...], model: str | None, checkpoint: str | None,
                 preset: str | None, device: str, precision: str, backend: str, out: str, fmt: str,
                 keyframes_file: str | None, overwrite: bool, start: int, max_frames: int | None, quiet: bool,
                 lost: dict, dataset: Any) -> None:
    """Write the masks of the objects in SOURCE, frame by frame, or a training set; no video.

    \b
    Examples:
      siamtrack export-masks video.mp4 --bbox 305,112,165,250 --out masks/
      siamtrack export-masks DAVIS/JPEGImages/480p/blackswan --bbox 127,73,383,312 \\
          --out pred/blackswan --format davis
      siamtrack export-masks video.mp4 --bbox 305,112,165,250 --label dog --format yolo --out dogs/

    Frame names are the source's frame indices (00000.png ...). The first frame holds the
    given boxes, filled: it is the initialisation, not a prediction (DAVIS evaluation skips it).
    With --format davis, object k (the k-th --bbox) has palette index k, as in DAVIS annotations.
    A dataset format writes the frames (--frames) and one label per visible object; a lost
    object has none. Ctrl-C leaves a valid dataset of the frames done.
    """
    import contextlib

    from siamtrack.commands._common import (
        Progress,
        echo_fit,
        echo_warning,
        first_frame,
        load_keyframes,
        make_tracker,
        open_input,
        parse_bbox,
    )
    from siamtrack.io.labels import open_dataset
    from siamtrack.io.sinks import DavisPaletteSink, MaskOutputs, MaskPngSink, NpzSink
    from siamtrack.keyframes import object_count
    from siamtrack.runs import OutDir
    from siamtrack.stream import Start, track_stream

    boxes = [parse_bbox(b) for b in bboxes]
    dataset.check(fmt)
    src = open_input(source)
    out_dir = OutDir(out, src.name, overwrite)
    keyframes = load_keyframes(keyframes_file, len(boxes), start, src.expected(start, max_frames))
    n_objects = object_count(len(boxes), keyframes)
    dataset.check(fmt, n_objects)

    def open_outputs(start: Start) -> MaskOutputs:
        path = out_dir.create()
        shape = (start.size[1], start.size[0])
        if fmt in DATASET_FORMATS:
            return MaskOutputs(open_dataset(fmt, path, start.size, n_objects, dataset, video=out_dir.name,
                                            fps=src.fps))
        return MaskOutputs(MaskPngSink(path) if fmt == "png" else
                           {"davis": DavisPaletteSink, "npz": NpzSink}[fmt](path, shape))

    frames = src.frames(start, max_frames)
    with contextlib.closing(frames):  # the decoder stops if model loading fails
        first = first_frame(frames)
        tracker = make_tracker(model, checkpoint, preset, device, precision, lost, backend)
        with Progress(src.expected(start, max_frames), quiet) as progress:
            summary = track_stream(tracker, frames, boxes, open_outputs, first=first, progress=progress,
                                   warn=echo_warning, keyframes=keyframes)
    fit = summary.outputs.get("polygon_fit")
    if fit and not quiet:
        echo_fit(fit, dataset.tolerance)
    click.echo(str(out_dir.path))
    if summary.interrupted:
        click.echo(f"Interrupted: {out_dir.path} holds the masks of the {summary.outputs['frames']} frames done.",
                   err=True)
        raise SystemExit(summary.exit_code)
