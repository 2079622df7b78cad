"""``siamtrack run``: track objects through a video; annotated video, mask PNGs and tracks.json."""

from __future__ import annotations

import click

from siamtrack.commands._common import bbox_option, model_options, user_errors


def box_record(obj_id: int, box: tuple[float, float, float, float]) -> dict:
    """The frame-0 record of an object: its given box."""
    import numpy as np

    from siamtrack.geometry import RotatedBox, box_corners

    x, y, w, h = box
    pts = box_corners((x + w / 2, y + h / 2), (w, h))
    rot = RotatedBox(pts, x + w / 2, y + h / 2, w, h, 0.0)
    return {"obj_id": obj_id, "box": [round(float(v), 3) for v in box], "rotated": rot.to_dict(), "score": 1.0,
            "mask_area": int(np.prod([max(int(round(w)), 0), max(int(round(h)), 0)])), "polygon_source": "init"}


@click.command()
@click.argument("source")
@bbox_option()
@model_options
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Output folder (default: a new runs/<source-name>N folder).")
@click.option("--overwrite", is_flag=True, help="Allow writing into an existing, non-empty --out folder.")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True, help="First frame index.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after this many frames.")
@click.option("--no-video", is_flag=True, help="Do not write annotated.mp4.")
@click.option("--no-masks", is_flag=True, help="Do not write mask PNGs.")
@click.option("--show", is_flag=True, help="Show the annotated frames in a window while tracking.")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
@user_errors
def run(source: str, bboxes: tuple[str, ...], model: str | None, checkpoint: str | None, preset: str | None,
        device: str, precision: str, out: str | None, overwrite: bool, start: int, max_frames: int | None,
        no_video: bool, no_masks: bool, show: bool, quiet: bool) -> None:
    """Track and segment objects in SOURCE (video file, image folder or glob).

    \b
    Examples:
      siamtrack run video.mp4 --bbox 305,112,165,250
      siamtrack run frames/ --bbox 10,20,50,60 --bbox 200,80,40,90 --out results
      siamtrack run "clip/*.jpg" --model siammask-davis --preset davis

    Writes annotated.mp4, masks/<object>/<frame>.png and tracks.json into the output folder.
    """
    from siamtrack.commands._common import first_frame, has_display, parse_bbox, prepare_out_dir, select_boxes
    from siamtrack.io.sources import open_source

    boxes = [parse_bbox(b) for b in bboxes]
    src = open_source(source)
    out_dir = prepare_out_dir(out, src.name, overwrite)
    frames = src.frames(start, max_frames)
    first = first_frame(frames)
    if not boxes:
        boxes = select_boxes(first.image)
    if show and not has_display():
        raise click.UsageError("--show needs a display")
    track_video(src, frames, first, boxes, out_dir, model=model, checkpoint=checkpoint, preset=preset,
                device=device, precision=precision, video=not no_video, masks=not no_masks, show=show,
                quiet=quiet, max_frames=max_frames, start=start)


def track_video(src, frames, first, boxes, out_dir, *, model, checkpoint, preset, device, precision, video: bool,
                masks: bool, show: bool, quiet: bool, max_frames, start: int) -> None:
    """The streaming loop shared by ``run`` and ``demo``: init, then track, render and write each frame."""
    import platform

    import cv2
    import torch

    from siamtrack import __version__
    from siamtrack import geometry as geo
    from siamtrack.commands._common import Progress, create_out_dir, init_tracker, make_tracker, summary_table
    from siamtrack.io.sinks import MaskPngSink, TrackRecords, VideoSink

    tracker = make_tracker(model, checkpoint, preset, device, precision)
    init_tracker(tracker, first.image, boxes)
    init_boxes = [tuple(float(v) for v in st.center - st.size / 2) + tuple(float(v) for v in st.size)
                  for st in tracker.states]
    create_out_dir(out_dir)
    meta = {"source": str(getattr(src, "path", src.name)), "model": tracker.model_name, "arch": tracker.arch,
            "preset": tracker.preset.to_dict(), "precision": tracker.precision, "device": str(tracker.device),
            "fps": src.fps, "size": list(src.size), "start": start, "siamtrack": __version__,
            "torch": torch.__version__, "opencv": cv2.__version__, "python": platform.python_version(),
            "objects": [{"obj_id": i, "init_box": list(b)} for i, b in enumerate(init_boxes)]}
    records = TrackRecords(out_dir / "tracks.jsonl", out_dir / "tracks.json", meta)
    mask_sink = MaskPngSink(out_dir / "masks") if masks else None
    video_sink = VideoSink(out_dir / "annotated.mp4", src.fps, src.size) if video else None
    h, w = first.image.shape[:2]
    total = None if src.count is None else max(src.count - start, 0)
    if max_frames is not None:
        total = max_frames if total is None else min(total, max_frames)
    interrupted = False
    progress = Progress(total, quiet)
    try:
        with progress:
            objects = [{"obj_id": i, "mask": geo.box_mask((h, w), b), "points": box_record(i, b)["rotated"]["points"],
                        "score": 1.0} for i, b in enumerate(init_boxes)]
            emit(first, [box_record(i, b) for i, b in enumerate(init_boxes)], objects, records, mask_sink,
                 video_sink, show)
            progress.advance()
            for frame in frames:
                results = tracker.track(frame.image)
                objects = [{"obj_id": r.obj_id, "mask": r.mask, "points": r.rotated.points, "score": r.score}
                           for r in results]
                emit(frame, [r.to_dict() for r in results], objects, records, mask_sink, video_sink, show)
                progress.advance()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if video_sink is not None:
            video_sink.close()
        records.close({"tracking_fps": round(progress.fps, 2), "interrupted": interrupted})
        if show:
            cv2.destroyAllWindows()
    if not quiet:
        rows = [("frames", records.frames), ("objects", len(init_boxes)), ("fps", f"{progress.fps:.1f}"),
                ("model", tracker.model_name), ("precision", tracker.precision), ("output", str(out_dir))]
        if video_sink is not None:
            rows.append(("video", str(video_sink.path)))
        if mask_sink is not None:
            rows.append(("mask PNGs", mask_sink.count))
        summary_table("siamtrack run" + (" (interrupted)" if interrupted else ""), rows)
    click.echo(str(out_dir))
    if interrupted:
        raise SystemExit(130)


def emit(frame, recs, objects, records, mask_sink, video_sink, show: bool) -> None:
    """Write one frame's outputs to every sink."""
    from siamtrack.io.sinks import render

    records.write(frame.index, frame.timestamp, recs)
    if mask_sink is not None:
        for obj in objects:
            mask_sink.write(frame.index, obj["obj_id"], obj["mask"])
    if video_sink is not None or show:
        annotated = render(frame.image, objects)
        if video_sink is not None:
            video_sink.write(annotated)
        if show:
            import cv2

            cv2.imshow("siamtrack", annotated)
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                raise KeyboardInterrupt
