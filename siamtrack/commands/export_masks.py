"""``siamtrack export-masks``: masks only (PNG per object, DAVIS palette or npz), no video encoding."""

from __future__ import annotations

import click

from siamtrack.commands._common import bbox_option, lost_options, model_options, user_errors

FORMATS = ("png", "davis", "npz")


@click.command("export-masks")
@click.argument("source")
@bbox_option(required=True)
@model_options
@lost_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="png", show_default=True,
              help="png: <out>/<object>/<frame>.png 0/255; davis: <out>/<frame>.png palette with ids 1..K; "
                   "npz: <out>/<frame>.npz (masks, ids).")
@click.option("--overwrite", is_flag=True, help="Allow writing into a non-empty --out folder.")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True,
              help="Index of the frame the boxes are drawn on.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after this many frames.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def export_masks(source: str, bboxes: tuple[str, ...], model: str | None, checkpoint: str | None,
                 preset: str | None, device: str, precision: str, backend: str, out: str, fmt: str, overwrite: bool,
                 start: int, max_frames: int | None, quiet: bool, lost: dict) -> None:
    """Write the masks of the objects in SOURCE, frame by frame, and nothing else.

    \b
    Examples:
      siamtrack export-masks video.mp4 --bbox 305,112,165,250 --out masks/
      siamtrack export-masks DAVIS/JPEGImages/480p/blackswan --bbox 127,73,383,312 \\
          --out pred/blackswan --format davis

    Frame names are the source's frame indices (00000.png ...). The first frame holds the
    given boxes, filled: it is the initialisation, not a prediction (DAVIS evaluation skips it).
    With --format davis, object k (the k-th --bbox) has palette index k, as in DAVIS annotations.
    """
    import contextlib

    from siamtrack.commands._common import Progress, echo_warning, first_frame, make_tracker, open_input, parse_bbox
    from siamtrack.io.sinks import DavisPaletteSink, MaskOutputs, MaskPngSink, NpzSink
    from siamtrack.runs import OutDir
    from siamtrack.stream import Start, track_stream

    boxes = [parse_bbox(b) for b in bboxes]
    src = open_input(source)
    out_dir = OutDir(out, src.name, overwrite)

    def open_outputs(start: Start) -> MaskOutputs:
        path = out_dir.create()
        shape = (start.size[1], start.size[0])
        return MaskOutputs(MaskPngSink(path) if fmt == "png" else
                           {"davis": DavisPaletteSink, "npz": NpzSink}[fmt](path, shape))

    frames = src.frames(start, max_frames)
    with contextlib.closing(frames):  # the decoder stops if model loading fails
        first = first_frame(frames)
        tracker = make_tracker(model, checkpoint, preset, device, precision, lost, backend)
        with Progress(src.expected(start, max_frames), quiet) as progress:
            summary = track_stream(tracker, frames, boxes, open_outputs, first=first, progress=progress,
                                   warn=echo_warning)
    click.echo(str(out_dir.path))
    if summary.interrupted:
        click.echo(f"Interrupted: {out_dir.path} holds the masks of the {summary.outputs['frames']} frames done.",
                   err=True)
        raise SystemExit(summary.exit_code)
