"""siamtrack: track and segment any object in a video from one bounding box (SiamMask)."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["RotatedBox", "SiamtrackError", "TrackResult", "Tracker", "__version__"]

from siamtrack.errors import SiamtrackError

if TYPE_CHECKING:
    from siamtrack.tracker import RotatedBox, Tracker, TrackResult


def __getattr__(name: str):
    # Lazy: `import siamtrack` stays cheap until the tracker (and torch) is needed.
    if name in ("Tracker", "TrackResult", "RotatedBox"):
        from siamtrack import tracker

        return getattr(tracker, name)
    raise AttributeError(name)
