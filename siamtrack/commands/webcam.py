"""``siamtrack webcam``: live tracking from a camera with an on-screen overlay."""

from __future__ import annotations

import click

from siamtrack.commands._common import bbox_option, model_options, user_errors


@click.command()
@click.option("--camera", type=int, default=0, show_default=True, help="Camera index.")
@bbox_option()
@model_options
@click.option("--record", type=click.Path(dir_okay=False), default=None, help="Also write the overlay to this MP4.")
@user_errors
def webcam(camera: int, bboxes, model, checkpoint, preset, device, precision, record: str | None) -> None:
    """Track objects live: select them with the mouse (or --bbox); r reselects, q or Esc quits.

    \b
    Example:
      siamtrack webcam --camera 0 --record session.mp4
    """
    import time
    from pathlib import Path

    import cv2

    from siamtrack.commands._common import has_display, init_tracker, make_tracker, parse_bbox, select_boxes
    from siamtrack.io.sinks import VideoSink, render
    from siamtrack.io.sources import Camera

    if not has_display():
        raise click.ClickException("webcam needs a display (no DISPLAY is set)")
    boxes = [parse_bbox(b) for b in bboxes]
    cam = Camera(camera)
    tracker = make_tracker(model, checkpoint, preset, device, precision)
    sink = VideoSink(Path(record), cam.fps, cam.size) if record else None
    frames = cam.frames()
    try:
        frame = next(frames)
        init_tracker(tracker, frame.image, boxes or select_boxes(frame.image))
        last = time.perf_counter()
        for frame in frames:
            results = tracker.track(frame.image)
            now = time.perf_counter()
            fps, last = 1.0 / max(now - last, 1e-6), now
            shown = render(frame.image, [{"obj_id": r.obj_id, "mask": r.mask, "points": r.rotated.points,
                                          "score": r.score} for r in results])
            cv2.putText(shown, f"{fps:.1f} fps", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
            if sink is not None:
                sink.write(shown)
            cv2.imshow("siamtrack webcam", shown)
            key = cv2.waitKey(1) & 0xFF
            if key in (ord("q"), 27):
                break
            if key == ord("r"):
                init_tracker(tracker, frame.image, select_boxes(frame.image))
    except KeyboardInterrupt:
        pass
    finally:
        if sink is not None:
            sink.close()
        cam.close()
        cv2.destroyAllWindows()
