"""``siamtrack vot``: a TraX server, so the VOT toolkit (``vot evaluate``) can run siamtrack as its tracker.

The toolkit starts this command (with ``TRAX=1`` in its environment), sends the first
frame's image path with the target's region, then one image path per frame, and reads back
one region per frame. TraX travels over stdin/stdout (or the port in ``TRAX_SOCKET``), so
everything siamtrack prints goes to stderr, which the toolkit keeps as the tracker's log.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import numpy as np

from siamtrack.commands._common import make_tracker, model_options, user_errors
from siamtrack.errors import SiamtrackError

OUTPUTS = ("polygon", "rectangle")


def init_box(region: Any) -> tuple[float, float, float, float]:
    """``(x, y, w, h)`` from a TraX rectangle, or from a polygon as the official SiamMask VOT test does."""
    from trax import Region

    from siamtrack.eval.boxes import vot_init_box

    if region.type == Region.RECTANGLE:
        return tuple(float(v) for v in region.bounds())  # type: ignore[return-value]
    if region.type == Region.POLYGON:
        points = np.array([region.get(i) for i in range(region.size())], np.float64)
        if len(points) == 4:
            return vot_init_box(points)
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        return float(x0), float(y0), float(x1 - x0), float(y1 - y0)
    raise SiamtrackError(f"cannot start from a TraX {region.type} region (rectangle or polygon only)")


def reply_region(result: Any, output: str) -> Any:
    """The tracked object as a TraX region: its rotated box (4 corners) or its axis-aligned box."""
    from trax import Polygon, Rectangle

    if output == "polygon":
        return Polygon.create([(float(x), float(y)) for x, y in np.asarray(result.rotated.points).reshape(4, 2)])
    return Rectangle.create(*(float(v) for v in result.box))


def read_frame(images: dict[str, Any]) -> np.ndarray:
    """The BGR frame behind a TraX request's colour image (a file path)."""
    import cv2

    image = images.get("color")
    if image is None:
        raise SiamtrackError("the TraX request has no colour image")
    path = image.path()
    frame = cv2.imread(path, cv2.IMREAD_COLOR)
    if frame is None:
        raise SiamtrackError(f"cannot read image {path}")
    return frame


def serve(server: Any, tracker: Any, output: str) -> int:
    """Answer TraX requests until the client quits; returns the number of frames tracked."""
    from trax import TraxStatus

    tracked = 0
    while True:
        request = server.wait()
        if request.type == TraxStatus.QUIT:
            return tracked
        frame = read_frame(request.image)
        if request.type == TraxStatus.INITIALIZE:
            if len(request.objects) != 1:
                raise SiamtrackError(f"siamtrack vot tracks one object per session, got {len(request.objects)}")
            region, _ = request.objects[0]
            tracker.init(frame, [init_box(region)])
            server.status([(region, {})])
        else:
            (result,) = tracker.track(frame)
            server.status([(reply_region(result, output), {"confidence": f"{result.score:.6f}"})])
            tracked += 1


@click.command("vot")
@model_options
@click.option("--output", type=click.Choice(OUTPUTS), default="polygon", show_default=True,
              help="Reply with the rotated box (4 corners, as the official SiamMask VOT results) "
                   "or the axis-aligned box.")
@user_errors
def vot(model: str | None, checkpoint: str | None, preset: str | None, device: str, precision: str,
        backend: str, output: str) -> None:
    """Track for the VOT toolkit over the TraX protocol (started by `vot evaluate`, not by hand).

    \b
    Example trackers.ini in the toolkit's workspace:
      [siamtrack]
      label = siamtrack
      protocol = trax
      command = siamtrack vot --model siammask-lite
    """
    if not (os.environ.get("TRAX") or os.environ.get("TRAX_SOCKET")):
        raise SiamtrackError("siamtrack vot talks TraX to the VOT toolkit, which starts it: "
                             "add it to the workspace's trackers.ini and run `vot evaluate` (see docs/eval.md)")
    try:
        import trax
    except ImportError:
        raise SiamtrackError("siamtrack vot needs the TraX bindings: pip install vot-trax") from None
    sys.stdout = sys.stderr  # file descriptor 1 carries the TraX messages; anything printed goes to the log
    # VOT's short-term protocol wants a region on every frame and judges failure itself: no lost state.
    tracker = make_tracker(model, checkpoint, preset, device, precision, {"lost_state": False}, backend)
    server = trax.Server([trax.Region.RECTANGLE, trax.Region.POLYGON], [trax.Image.PATH],
                         tracker_name="siamtrack", tracker_family="siammask",
                         tracker_description=f"siamtrack {getattr(tracker, 'model_name', None) or 'checkpoint'}")
    try:
        serve(server, tracker, output)
    except trax.TraxException as exc:  # the client went away or broke the protocol
        raise SiamtrackError(f"TraX session ended: {exc}") from None
    except SiamtrackError as exc:
        server.quit(reason=str(exc))
        raise
    server.quit()
