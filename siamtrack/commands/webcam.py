"""``siamtrack webcam``: live tracking from a camera, in a window or headless (``run``'s outputs)."""

from __future__ import annotations

import click

from siamtrack.commands._common import bbox_option, lost_options, model_options, user_errors

WINDOW = "siamtrack webcam (r: reselect, q/Esc: quit)"
HEADLESS_ONLY = ("out", "overwrite", "masks", "no_video")


@click.command()
@click.option("--camera", default="0", show_default=True, metavar="INDEX|DEVICE|URL",
              help="Camera index, a device (/dev/video2) or a stream URL (rtsp://...).")
@bbox_option()
@model_options
@lost_options
@click.option("--no-window", is_flag=True,
              help="Track without a window (needs --bbox) and write run's outputs; the default without a display.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after this many frames.")
@click.option("--record", type=click.Path(dir_okay=False), default=None,
              help="With a window: also write the overlay to this MP4.")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Without a window: output folder (default: a new numbered runs/camera<N> folder).")
@click.option("--overwrite", is_flag=True, help="Without a window: allow writing into a non-empty --out folder.")
@click.option("--masks", is_flag=True, help="Without a window: also write mask PNGs.")
@click.option("--no-video", is_flag=True, help="Without a window: do not write annotated.mp4.")
@click.option("--quiet", is_flag=True, help="Without a window: no progress bar or summary.")
@user_errors
def webcam(camera: str, bboxes: tuple[str, ...], model: str | None, checkpoint: str | None, preset: str | None,
           device: str, precision: str, backend: str, no_window: bool, max_frames: int | None, record: str | None,
           out: str | None, overwrite: bool, masks: bool, no_video: bool, quiet: bool, lost: dict) -> None:
    """Track objects live: select them with the mouse (or --bbox); r reselects, q or Esc quits.

    Without a display (or with --no-window) there is no window: the objects of --bbox are
    tracked until Ctrl-C, SIGTERM or --max-frames, and the outputs are run's (tracks.json,
    annotated.mp4, mask PNGs with --masks) in a new runs/camera<N> folder or --out.

    \b
    Examples:
      siamtrack webcam
      siamtrack webcam --camera 1 --bbox 200,150,120,160 --record session.mp4
      siamtrack webcam --no-window --bbox 200,150,120,160 --max-frames 3000 --out cam/
    """
    from pathlib import Path

    from siamtrack.commands._common import has_display, parse_bbox

    boxes = [parse_bbox(b) for b in bboxes]
    spec: int | str = int(camera) if camera.isdigit() else camera
    if no_window or not has_display():
        if not boxes:
            raise click.UsageError("without a display (or with --no-window) boxes cannot be drawn: pass --bbox x,y,w,h")
        if record is not None:
            raise click.UsageError("--record needs a window; without one the overlay is written to --out/annotated.mp4")
        _headless(spec, boxes, (model, checkpoint, preset, device, precision, lost, backend), max_frames, out,
                  overwrite, masks, no_video, quiet)
        return
    params = click.get_current_context().params
    used = [f"--{name.replace('_', '-')}" for name in HEADLESS_ONLY if params[name]]
    if used:
        raise click.UsageError(f"{', '.join(used)} apply without a window; add --no-window")
    if record is not None and not Path(record).resolve().parent.is_dir():
        raise click.UsageError(f"cannot record to {record}: its folder does not exist")
    _window(spec, boxes, (model, checkpoint, preset, device, precision, lost, backend), max_frames, record)


def _headless(spec: int | str, boxes: list, model: tuple, max_frames: int | None, out: str | None, overwrite: bool,
              masks: bool, no_video: bool, quiet: bool) -> None:
    """``run`` on a camera: the shared streaming loop into run's outputs, no window."""
    import contextlib

    from siamtrack.commands._common import first_frame, make_tracker
    from siamtrack.commands.run import track_video
    from siamtrack.io.sources import Camera, camera_name
    from siamtrack.runs import RUN_OUTPUTS, OutDir

    out_dir = OutDir(out, camera_name(spec), overwrite, owned=RUN_OUTPUTS)
    with Camera(spec) as cam:
        frames = cam.frames(0, max_frames)
        with contextlib.closing(frames):
            first = first_frame(frames)
            tracker = make_tracker(*model)
            track_video(tracker, cam, frames, first, boxes, out_dir, source_label=f"camera {spec}",
                        video=not no_video, masks=masks, quiet=quiet, total=max_frames)


def _window(spec: int | str, boxes: list, model: tuple, max_frames: int | None, record: str | None) -> None:
    """The live overlay in a window, with reselection; ``record`` also writes it to an MP4."""
    import time
    from pathlib import Path

    import cv2

    from siamtrack.commands._common import first_frame, init_tracker, make_tracker, select_boxes
    from siamtrack.io.sinks import VideoSink, render
    from siamtrack.io.sources import Camera

    with Camera(spec) as cam:
        tracker = make_tracker(*model)
        frames = cam.frames(0, max_frames)
        first = first_frame(frames)
        init_tracker(tracker, first.image, boxes or select_boxes(first.image))
        sink = VideoSink(Path(record), cam.fps, cam.size) if record else None
        fps = 0.0
        last = time.perf_counter()
        try:
            for frame in frames:
                results = tracker.track(frame.image)
                now = time.perf_counter()
                fps = 0.9 * fps + 0.1 / max(now - last, 1e-6) if fps else 1.0 / max(now - last, 1e-6)
                last = now
                shown = render(frame.image, results)
                cv2.putText(shown, f"{fps:.1f} fps", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2,
                            cv2.LINE_AA)
                if sink is not None:
                    sink.write(shown)
                cv2.imshow(WINDOW, shown)
                key = cv2.waitKey(1) & 0xFF
                if key in (ord("q"), 27):
                    break
                if key == ord("r"):
                    init_tracker(tracker, frame.image, select_boxes(frame.image))
                    last = time.perf_counter()
        except KeyboardInterrupt:
            pass
        finally:
            if sink is not None:
                sink.close()
            cv2.destroyAllWindows()
    if record:
        click.echo(record)
