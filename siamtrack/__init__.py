"""siamtrack: track and segment any object in a video from one bounding box (SiamMask)."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["PRESETS", "Preset", "RotatedBox", "SiamtrackError", "TrackResult", "Tracker", "__version__",
           "build_tracker", "from_checkpoint", "from_pretrained"]

from siamtrack.errors import SiamtrackError

if TYPE_CHECKING:
    from siamtrack.api import build_tracker, from_checkpoint, from_pretrained
    from siamtrack.geometry import RotatedBox
    from siamtrack.presets import PRESETS, Preset
    from siamtrack.results import TrackResult
    from siamtrack.tracker import Tracker

_LAZY = {"Tracker": "tracker", "TrackResult": "results", "RotatedBox": "geometry", "Preset": "presets",
         "PRESETS": "presets", "build_tracker": "api", "from_checkpoint": "api", "from_pretrained": "api"}


def __getattr__(name: str):
    # Lazy: `import siamtrack` stays cheap until the tracker (and torch) is needed.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"siamtrack.{_LAZY[name]}"), name)
    raise AttributeError(name)
