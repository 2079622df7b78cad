"""The arithmetic conventions of the tracker families siamtrack reproduces.

The official SiamMask code, PySOT and OpenCV's ``TrackerNano`` run the same algorithm and differ
in small arithmetic: where a crop starts, how its side is rounded, what pads it, whether the state
is clipped before the mask step, how the aspect-ratio penalty and the cosine window are formed. A
preset names its style; the tracker, the crops and the decoders ask the style, so a new convention
is one entry of ``STYLES``, not a branch in the tracker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from siamtrack import geometry as geo


@dataclass(frozen=True)
class Style:
    """One family's conventions (the fields say what differs from the official code)."""

    name: str
    half_up: bool = False  # crop origins rounded half up (PySOT); the official code rounds half to even
    truncate: bool = False  # the centre and both crop sides truncated (OpenCV)
    center_offset: float = 0.0  # added to a box's centre at init (PySOT centres at x + (w-1)/2)
    clip_first: bool = False  # the state is clipped before the mask step: the fallback box is the clipped one
    mask_pad: float = -1.0  # what the warped-back mask holds outside the crop (the official code: -1)
    frame_mean_pad: bool = False  # each frame is padded with its own rounded mean, not the first frame's
    unscaled_ratio: bool = False  # the aspect-ratio penalty compares with the unscaled target size
    sqrt_window: bool = False  # the cosine window's square root (a flatter window)

    def exemplar_side(self, size: Sequence[float], context: float) -> float:
        """The template crop's side in frame pixels for a target of ``size``."""
        if self.truncate:
            return int(geo.context_size(size, context))
        return geo.exemplar_side(size, context)

    def search_side(self, size: Sequence[float], context: float) -> float:
        """The search crop's side in frame pixels for a target of ``size``."""
        grown = geo.context_size(size, context) * geo.INSTANCE_SIZE / geo.EXEMPLAR_SIZE
        if self.truncate:
            return int(grown)
        if self.half_up:
            return round(grown)
        return geo.search_side(size, context)

    def pad_color(self, frame: np.ndarray, first_mean: np.ndarray) -> np.ndarray:
        """What pads a crop of ``frame`` beyond the frame: the first frame's mean, or this frame's."""
        return np.round(frame.mean(axis=(0, 1))) if self.frame_mean_pad else first_mean


STYLES: dict[str, Style] = {
    "official": Style("official"),
    "pysot": Style("pysot", half_up=True, center_offset=-0.5, clip_first=True, mask_pad=0.0, unscaled_ratio=True),
    "opencv": Style("opencv", truncate=True, frame_mean_pad=True, sqrt_window=True),
}


def style_of(name: str) -> Style:
    """The style a preset names (``official``, ``pysot``, ``opencv``)."""
    try:
        return STYLES[name]
    except KeyError:
        raise ValueError(f"unknown style {name!r}; known: {', '.join(STYLES)}") from None


def context_crops(frame: np.ndarray, centers: Sequence[np.ndarray], sides: Sequence[float], out_size: int,
                  pad: np.ndarray, style: Style) -> np.ndarray:
    """(K, out, out, 3) uint8 crops of ``frame`` at ``centers`` with ``sides``, cut as ``style`` cuts them."""
    return np.stack([geo.context_crop(frame, c, s, out_size, pad, style.half_up, truncate=style.truncate)
                     for c, s in zip(centers, sides, strict=True)])
