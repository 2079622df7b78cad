"""Head decoders: a network's score and box maps -> the chosen candidate and the new target state.

One decoder per head type; the network names its type (``NetworkSpec.head_type``: ``"anchors"``,
SiamMask's RPN; ``"points"``, NanoTrack's anchor-free head) and ``decoder_for`` picks the decoder,
so a new head enters here, not as a branch in the tracker. Both share the selection arithmetic of
the Siamese trackers (SiamRPN/SiamMask, PySOT, NanoTrack): a scale and aspect-ratio change penalty
on the softmax score, a cosine window, the argmax, and a size update with rate
``penalty * score * lr``; they differ in how a cell's box is read from the maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from siamtrack import geometry as geo
from siamtrack.models import NetworkSpec
from siamtrack.styles import style_of

# (best flat index, row, col, new centre, new size, best score, (pscore, score, penalty), mask cell (row, col))
Pick = tuple[int, int, int, np.ndarray, np.ndarray, float, tuple[np.ndarray, np.ndarray, np.ndarray], tuple[int, int]]


@dataclass(frozen=True)
class HeadDecoder:
    """Shared selection; subclasses say how the box maps decode (``boxes``) and what the maps hold."""

    window: np.ndarray  # (N,) cosine window over the flattened maps
    shape: tuple[int, int, int]  # (maps per cell, rows, cols) of the flattened score
    masks: bool  # whether the network refines a mask at the chosen cell (else the mask is the filled box)

    def boxes(self, delta: np.ndarray) -> np.ndarray:
        """(4, N) box outputs -> (4, N) candidate boxes cx, cy, w, h in crop pixels from the crop centre."""
        raise NotImplementedError

    def mask_window(self, crop_box: tuple[float, float, int, int], row: int, col: int
                    ) -> tuple[float, float, float, float]:
        """Frame-space (x0, y0, w, h) the mask refined at cell (row, col) of crop ``crop_box`` covers."""
        raise NotImplementedError(f"{type(self).__name__} makes no masks")

    def mask_cell(self, row: int, col: int, box: np.ndarray) -> tuple[int, int]:
        """The cell whose mask is refined when cell (row, col) is chosen with crop-space ``box``
        (cx, cy, w, h from the crop centre): the chosen cell itself, as SiamMask does."""
        return row, col

    def select(self, center: np.ndarray, size: np.ndarray, score: np.ndarray, delta: np.ndarray,
               preset: Any) -> Pick:
        """The best candidate for a target at ``center``/``size`` and the updated state (before clipping).

        ``score`` (N,) is the foreground probability, ``delta`` (4, N) the box outputs; ``preset``
        gives ``penalty_k``, ``window_influence``, ``lr``, ``context_amount`` and ``style`` (whose
        ``unscaled_ratio`` and ``sqrt_window`` say how the penalty and the window are formed).
        """
        style = style_of(preset.style)
        scale_x = geo.EXEMPLAR_SIZE / geo.context_size(size, preset.context_amount)
        boxes = self.boxes(delta)
        ratio = size[0] / size[1] if style.unscaled_ratio else None
        penalty = geo.size_penalty(boxes, size * scale_x, preset.penalty_k, ratio)
        pscore = penalty * score
        window = np.sqrt(self.window) if style.sqrt_window else self.window
        pscore = pscore * (1 - preset.window_influence) + window * preset.window_influence
        if not np.all(np.isfinite(pscore)):
            pscore = np.where(np.isfinite(pscore), pscore, -np.inf)
        best = int(np.argmax(pscore))
        _, row, col = np.unravel_index(best, self.shape)
        pred = boxes[:, best] / scale_x
        lr = penalty[best] * score[best] * preset.lr
        new_center = np.array([pred[0] + center[0], pred[1] + center[1]])
        new_size = np.array([size[0] * (1 - lr) + pred[2] * lr, size[1] * (1 - lr) + pred[3] * lr])
        if not (np.all(np.isfinite(new_center)) and np.all(np.isfinite(new_size))):
            new_center, new_size = center.copy(), size.copy()
        cell = self.mask_cell(int(row), int(col), boxes[:, best])
        return best, int(row), int(col), new_center, new_size, float(score[best]), (pscore, score, penalty), cell


@dataclass(frozen=True)
class AnchorDecoder(HeadDecoder):
    """SiamMask's RPN: five anchors per cell of the 25x25 map, (dx, dy, dw, dh) regression; masks refined."""

    anchors: np.ndarray = None  # (N, 4) cx, cy, w, h

    @classmethod
    def for_spec(cls, spec: NetworkSpec) -> AnchorDecoder:
        n = len(geo.RATIOS) * len(geo.SCALES)
        return cls(geo.cosine_window(), (n, geo.SCORE_SIZE, geo.SCORE_SIZE), spec.masks, geo.generate_anchors())

    def boxes(self, delta: np.ndarray) -> np.ndarray:
        return geo.decode_boxes(delta, self.anchors)

    def mask_window(self, crop_box: tuple[float, float, int, int], row: int, col: int
                    ) -> tuple[float, float, float, float]:
        return geo.mask_window(crop_box, row, col)


def point_grid(score_size: int, stride: int) -> np.ndarray:
    """(S*S, 2) x, y of each map cell in crop pixels from the crop centre, row-major:
    ``stride * (i - S // 2)`` (for an even S the grid is one cell longer on the negative side)."""
    offsets = (stride * (np.arange(score_size) - score_size // 2)).astype(np.float32)
    xx, yy = np.meshgrid(offsets, offsets)
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


def ltrb_to_boxes(delta: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distances (4, N) from each point to the left, top, right, bottom edges -> boxes (4, N) cx, cy, w, h."""
    x1, y1 = points[:, 0] - delta[0], points[:, 1] - delta[1]
    x2, y2 = points[:, 0] + delta[2], points[:, 1] + delta[3]
    return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])


@dataclass(frozen=True)
class PointDecoder(HeadDecoder):
    """Anchor-free heads (NanoTrack): one candidate per cell, its box as l/t/r/b distances.

    ``masks``: the network refines a mask at the chosen point (siammask-nano; a point model says so
    with a ``masks`` attribute, see ``NetworkSpec``); NanoTrack has none: boxes only.
    """

    points: np.ndarray = None  # (N, 2)
    stride: int = 16

    @classmethod
    def for_spec(cls, spec: NetworkSpec) -> PointDecoder:
        return cls.of_size(int(spec.score_size), int(spec.stride), spec.masks)

    @classmethod
    def of_size(cls, score_size: int, stride: int, masks: bool = False) -> PointDecoder:
        win = np.outer(np.hanning(score_size), np.hanning(score_size)).ravel()
        return cls(win, (1, score_size, score_size), masks, point_grid(score_size, stride), stride)

    def boxes(self, delta: np.ndarray) -> np.ndarray:
        return ltrb_to_boxes(delta, self.points)

    def mask_window(self, box: tuple[float, float, int, int], row: int, col: int) -> tuple[float, float, float, float]:
        """The 127-pixel square centred on point (row, col) (``point_grid``: crop pixel
        ``127 + stride * (i - S // 2)``), in frame coordinates."""
        offset = 2 * (self.shape[1] // 2) - (geo.INSTANCE_SIZE - geo.EXEMPLAR_SIZE) // self.stride
        return geo.mask_window(box, row, col, stride=self.stride, base_size=offset)

    def mask_cell(self, row: int, col: int, box: np.ndarray) -> tuple[int, int]:
        """The point nearest the chosen box's centre. A point head's best point can sit anywhere on
        the object (its l/t/r/b reach the edges from there), so its 127-pixel mask window can cut the
        object off; the mask is trained at points around the centre. Chosen on held-back training
        videos (hike, soccerball, swing: J 0.694 -> 0.705; all 30 training videos 0.682 -> 0.686)."""
        if not np.all(np.isfinite(box[:2])):
            return row, col
        nearest = int(np.argmin(np.hypot(self.points[:, 0] - box[0], self.points[:, 1] - box[1])))
        return divmod(nearest, self.shape[2])


DECODERS: dict[str, type[HeadDecoder]] = {"anchors": AnchorDecoder, "points": PointDecoder}


def decoder_for(spec: NetworkSpec) -> HeadDecoder:
    """The decoder of the head type a network declares (``spec.head_type``)."""
    if spec.head_type not in DECODERS:
        raise ValueError(f"unknown head type {spec.head_type!r}; known: {', '.join(DECODERS)}")
    return DECODERS[spec.head_type].for_spec(spec)
