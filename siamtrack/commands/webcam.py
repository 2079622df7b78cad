"""``siamtrack webcam``: live tracking from a camera with an on-screen overlay."""

from __future__ import annotations

import click

from siamtrack.commands._common import bbox_option, lost_options, model_options, user_errors

WINDOW = "siamtrack webcam (r: reselect, q/Esc: quit)"


@click.command()
@click.option("--camera", type=click.IntRange(min=0), default=0, show_default=True, help="Camera index.")
@bbox_option()
@model_options
@lost_options
@click.option("--record", type=click.Path(dir_okay=False), default=None, help="Also write the overlay to this MP4.")
@user_errors
def webcam(camera: int, bboxes: tuple[str, ...], model: str | None, checkpoint: str | None, preset: str | None,
           device: str, precision: str, record: str | None, lost: dict) -> None:
    """Track objects live: select them with the mouse (or --bbox); r reselects, q or Esc quits.

    \b
    Examples:
      siamtrack webcam
      siamtrack webcam --camera 1 --bbox 200,150,120,160 --record session.mp4
    """
    import time
    from pathlib import Path

    import cv2

    from siamtrack.commands._common import has_display, init_tracker, make_tracker, parse_bbox, select_boxes
    from siamtrack.errors import SiamtrackError
    from siamtrack.io.sinks import VideoSink, render
    from siamtrack.io.sources import Camera

    boxes = [parse_bbox(b) for b in bboxes]
    if not has_display():
        raise SiamtrackError("webcam needs a display (no DISPLAY or WAYLAND_DISPLAY is set)")
    if record is not None and not Path(record).resolve().parent.is_dir():
        raise SiamtrackError(f"cannot record to {record}: its folder does not exist")
    with Camera(camera) as cam:
        tracker = make_tracker(model, checkpoint, preset, device, precision, lost)
        frames = cam.frames()
        first = next(frames)
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
