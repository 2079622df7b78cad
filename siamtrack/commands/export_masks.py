"""``siamtrack export-masks``: masks only (PNG per object, DAVIS palette or npz), no video encoding."""

from __future__ import annotations

import click

from siamtrack.commands._common import bbox_option, model_options, user_errors


@click.command("export-masks")
@click.argument("source")
@bbox_option(required=True)
@model_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--format", "fmt", type=click.Choice(["png", "davis", "npz"]), default="png", show_default=True,
              help="png: <out>/<object>/<frame>.png 0/255; davis: <out>/<frame>.png palette with ids 1..K; "
                   "npz: <out>/<frame>.npz (masks, ids).")
@click.option("--overwrite", is_flag=True, help="Allow writing into a non-empty --out folder.")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--max-frames", type=click.IntRange(min=1), default=None)
@click.option("--quiet", is_flag=True)
@user_errors
def export_masks(source: str, bboxes: tuple[str, ...], model, checkpoint, preset, device, precision, out: str,
                 fmt: str, overwrite: bool, start: int, max_frames: int | None, quiet: bool) -> None:
    """Write the masks of the objects in SOURCE, frame by frame.

    \b
    Examples:
      siamtrack export-masks video.mp4 --bbox 305,112,165,250 --out masks/
      siamtrack export-masks DAVIS/JPEGImages/480p/blackswan --bbox 127,73,383,312 --out pred/blackswan --format davis

    Frame 0 holds the given box (filled): it is the initialisation, not a prediction.
    """
    from siamtrack.commands._common import (
        Progress,
        create_out_dir,
        first_frame,
        init_tracker,
        make_tracker,
        parse_bbox,
        prepare_out_dir,
    )
    from siamtrack.geometry import box_mask
    from siamtrack.io.sinks import DavisPaletteSink, MaskPngSink, NpzSink
    from siamtrack.io.sources import open_source

    boxes = [parse_bbox(b) for b in bboxes]
    src = open_source(source)
    out_dir = prepare_out_dir(out, src.name, overwrite)
    frames = src.frames(start, max_frames)
    first = first_frame(frames)
    tracker = make_tracker(model, checkpoint, preset, device, precision)
    init_tracker(tracker, first.image, boxes)
    create_out_dir(out_dir)
    shape = first.image.shape[:2]
    sink = {"png": MaskPngSink, "davis": DavisPaletteSink, "npz": NpzSink}[fmt](out_dir)

    def write(index: int, masks: list) -> None:
        if fmt == "png":
            for obj_id, m in masks:
                sink.write(index, obj_id, m)
        else:
            sink.write_frame(index, masks, shape)

    total = None if src.count is None else max(src.count - start, 0)
    if max_frames is not None:
        total = max_frames if total is None else min(total, max_frames)
    progress = Progress(total, quiet)
    with progress:
        write(first.index, [(i, box_mask(shape, b)) for i, b in enumerate(boxes)])
        progress.advance()
        for frame in frames:
            write(frame.index, [(r.obj_id, r.mask) for r in tracker.track(frame.image)])
            progress.advance()
    click.echo(str(out_dir))
