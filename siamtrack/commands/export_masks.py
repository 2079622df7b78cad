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
                 preset: str | None, device: str, precision: str, out: str, fmt: str, overwrite: bool, start: int,
                 max_frames: int | None, quiet: bool, lost: dict) -> None:
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
    from siamtrack.commands._common import (
        OutDir,
        Progress,
        first_frame,
        init_tracker,
        interrupted_exit_code,
        make_tracker,
        parse_bbox,
        stop_on_signals,
    )
    from siamtrack.geometry import box_mask
    from siamtrack.io.sinks import BackgroundWorker, DavisPaletteSink, MaskPngSink, NpzSink
    from siamtrack.io.sources import open_source
    from siamtrack.tracker import clip_box

    boxes = [parse_bbox(b) for b in bboxes]
    src = open_source(source)
    out_dir = OutDir(out, src.name, overwrite)
    frames = src.frames(start, max_frames)
    first = first_frame(frames)
    tracker = make_tracker(model, checkpoint, preset, device, precision, lost)
    ids = init_tracker(tracker, first.image, boxes)
    shape = first.image.shape[:2]
    initial = [(i, box_mask(shape, clip_box(b, (shape[1], shape[0]))[0])) for i, b in zip(ids, boxes, strict=True)]
    path = out_dir.create()
    sink = MaskPngSink(path) if fmt == "png" else {"davis": DavisPaletteSink, "npz": NpzSink}[fmt](path, shape)
    done = {"frames": 0}

    def write(item: tuple) -> None:
        sink.write(*item)
        done["frames"] += 1

    writer = BackgroundWorker(write)
    progress = Progress(src.expected(start, max_frames), quiet)
    interrupted = False
    with stop_on_signals() as got:
        try:
            with progress:
                writer.put((first.index, initial))
                progress.advance()
                progress.start()
                for frame in frames:
                    writer.put((frame.index, [(r.obj_id, r.mask) for r in tracker.track(frame.image)]))
                    progress.advance()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            frames.close()
            writer.close()
    click.echo(str(path))
    if interrupted:
        click.echo(f"Interrupted: {path} holds the masks of the {done['frames']} frames done.", err=True)
        raise SystemExit(interrupted_exit_code(got))
