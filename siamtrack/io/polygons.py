"""Masks as polygons (OpenCV contours) and as COCO run-length encoding (pycocotools).

Polygon vertices are pixel coordinates as OpenCV gives them (the centre of pixel (x, y) is
(x, y)), which is how ultralytics, supervision and CVAT rasterise polygons back (cv2.fillPoly
or the equivalent), so a mask survives the round trip up to the simplification tolerance.

Holes and parts: ``mask_polygons`` returns one polygon per connected part, each with its holes
joined in by a zero-width cut from the part's outline to the hole's nearest vertex and back
(an even-odd fill leaves the hole empty). ``join_polygons`` joins the parts the same way into
a single outline, for formats that hold one polygon per object (YOLO lines, CVAT shapes); this
is how ultralytics' own COCO converter merges multi-part segments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from siamtrack.errors import SiamtrackError

__all__ = ["DEFAULT_TOLERANCE", "MIN_IOU", "PolygonFit", "encode_rle", "join_polygons", "mask_polygons", "polygon_iou",
           "polygon_mask"]

DEFAULT_TOLERANCE = 1.0  # pixels: the Douglas-Peucker distance an outline may move by (cv2.approxPolyDP)
MIN_IOU = 0.98  # a simplified polygon under this mask IoU is written unsimplified instead


def _nearest(outer: np.ndarray, inner: np.ndarray) -> tuple[int, int, float]:
    """The closest pair of vertices (index in ``outer``, index in ``inner``) and their distance."""
    d = ((outer[:, None, :].astype(np.int64) - inner[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(d.argmin()), d.shape)
    return int(i), int(j), float(np.sqrt(d[i, j]))


def _bridge(outer: np.ndarray, inner: np.ndarray, at: tuple[int, int, float] | None = None) -> np.ndarray:
    """``outer`` with ``inner`` spliced in at their nearest pair of vertices (there and back)."""
    i, j, _ = at or _nearest(outer, inner)
    return np.concatenate([outer[:i + 1], np.roll(inner, -j, axis=0), inner[j:j + 1], outer[i:]])


def mask_polygons(mask: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> list[np.ndarray]:
    """The outline of each part of ``mask`` (holes joined in), simplified by ``tolerance`` pixels
    (0: exact, every corner of the pixel outline).

    Each polygon is an (N, 2) int32 array of x, y vertices, N >= 3; parts too small to have
    three vertices (a pixel, a one-pixel line) are dropped, so a polygon export can lose them.
    """
    m = np.ascontiguousarray(mask, dtype=bool).view(np.uint8)
    x, y, w, h = cv2.boundingRect(m)
    if w == 0 or h == 0:
        return []
    roi = np.pad(m[y:y + h, x:x + w], 1)  # a zero border: parts touching the frame edge close there
    # CHAIN_APPROX_SIMPLE drops only the inner points of straight runs: lossless for the fill
    contours, hierarchy = cv2.findContours(roi, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE, offset=(x - 1, y - 1))
    if hierarchy is None:
        return []
    simplified = [cv2.approxPolyDP(c, tolerance, True).reshape(-1, 2) if tolerance > 0 else c.reshape(-1, 2)
                  for c in contours]
    out = []
    for k, (_, _, child, parent) in enumerate(hierarchy[0]):
        if parent != -1 or len(simplified[k]) < 3:
            continue
        poly = simplified[k]
        while child != -1:  # the holes of this part: its children in the two-level hierarchy
            if len(simplified[child]) >= 3:
                poly = _bridge(poly, simplified[child])
            child = hierarchy[0][child][0]
        out.append(poly.astype(np.int32))
    return out


def join_polygons(polygons: list[np.ndarray]) -> np.ndarray | None:
    """The parts as one outline: from the largest, the nearest remaining part joined next by a
    zero-width cut between nearest vertices; None for no parts. A fill draws a cut one pixel
    wide, so a part smaller than its cut is long (a far fragment) is dropped instead: the
    outline then differs from the mask by fewer pixels than with it."""
    if not polygons:
        return None
    rest = sorted(polygons, key=lambda p: -_pixels(p))
    joined = rest.pop(0)
    while rest:  # the part nearest to what is joined so far next (short cuts; a part can be a stepping stone)
        near = [_nearest(joined, poly) for poly in rest]
        k = min(range(len(rest)), key=lambda n: near[n][2])
        poly = rest.pop(k)
        if _pixels(poly) > near[k][2]:  # dropping it loses its pixels, the cut adds about its length
            joined = _bridge(joined, poly, near[k])
    return joined


def _pixels(poly: np.ndarray) -> float:
    """About how many pixels a fill of the polygon covers: its area plus half its outline (the
    outline's pixels are filled whole, the area counts them half)."""
    c = poly.reshape(-1, 1, 2)
    return abs(cv2.contourArea(c)) + cv2.arcLength(c, True) / 2 + 1


def polygon_mask(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """The polygons rasterised (each filled even-odd by cv2.fillPoly, then their union), HxW bool."""
    out = np.zeros(shape, np.uint8)
    for poly in polygons:
        part = np.zeros(shape, np.uint8)
        cv2.fillPoly(part, [np.asarray(poly, np.int32).reshape(-1, 1, 2)], 1)
        out |= part
    return out.astype(bool)


def polygon_iou(mask: np.ndarray, polygons: list[np.ndarray]) -> float:
    """Mask IoU of ``polygons`` rasterised back against ``mask``, inside the mask's bounding box
    (every vertex lies on the mask's outline, so nothing drawn falls outside it); 1 for two empties."""
    m = np.ascontiguousarray(mask, dtype=bool)
    x, y, w, h = cv2.boundingRect(m.view(np.uint8))
    if w == 0 or h == 0:
        return 1.0 if not polygons else 0.0
    drawn = polygon_mask([np.asarray(p, np.int32) - (x, y) for p in polygons], (h, w))
    roi = m[y:y + h, x:x + w]
    return float(np.count_nonzero(drawn & roi) / np.count_nonzero(drawn | roi))


@dataclass
class PolygonFit:
    """How well the written polygons match the masks they come from: mask IoU per annotation, and
    how many masks were written unsimplified because simplifying cost more than ``min_iou``."""

    min_iou: float = MIN_IOU
    count: int = 0
    total: float = 0.0
    worst: float = 1.0
    exact: int = 0
    below: dict[float, int] = field(default_factory=lambda: {0.98: 0, 0.95: 0})

    def polygons(self, mask: np.ndarray, tolerance: float, joined: bool = False) -> list[np.ndarray]:
        """The mask's polygons simplified by ``tolerance``, or its exact outline where the simplified
        ones fall under ``min_iou`` (thin parts); ``joined``: as one outline. The IoU is recorded."""
        polys = self._shape(mask, tolerance, joined)
        iou = polygon_iou(mask, polys)
        if iou < self.min_iou and tolerance > 0:
            polys = self._shape(mask, 0.0, joined)
            iou = polygon_iou(mask, polys)
            self.exact += 1
        self.count += 1
        self.total += iou
        self.worst = min(self.worst, iou)
        for t in self.below:
            self.below[t] += iou < t
        return polys

    @staticmethod
    def _shape(mask: np.ndarray, tolerance: float, joined: bool) -> list[np.ndarray]:
        polys = mask_polygons(mask, tolerance)
        return [join_polygons(polys)] if joined and polys else polys  # type: ignore[list-item]

    def to_dict(self) -> dict[str, float | int | None]:
        return {"masks": self.count, "mean_iou": round(float(self.total) / self.count, 5) if self.count else None,
                "min_iou": round(float(self.worst), 5) if self.count else None, "unsimplified": self.exact,
                **{f"below_{t:g}": int(n) for t, n in self.below.items()}}


def encode_rle(mask: np.ndarray) -> dict[str, object]:
    """COCO compressed RLE (``{"size": [h, w], "counts": str}``) made by pycocotools."""
    try:
        from pycocotools import mask as coco_mask
    except ImportError:
        raise SiamtrackError("COCO and YouTube-VIS exports need pycocotools: pip install 'siamtrack[labels]'") from None
    rle = coco_mask.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
