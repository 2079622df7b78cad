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

__all__ = ["DEFAULT_TOLERANCE", "PolygonFit", "encode_rle", "join_polygons", "mask_polygons", "polygon_mask"]

DEFAULT_TOLERANCE = 1.0  # pixels: the Douglas-Peucker distance an outline may move by (cv2.approxPolyDP)


def _bridge(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``outer`` with ``inner`` spliced in at their nearest pair of vertices (there and back)."""
    d = ((outer[:, None, :].astype(np.int64) - inner[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(d.argmin()), d.shape)
    return np.concatenate([outer[:i + 1], np.roll(inner, -j, axis=0), inner[j:j + 1], outer[i:]])


def mask_polygons(mask: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> list[np.ndarray]:
    """The outline of each part of ``mask`` (holes joined in), simplified by ``tolerance`` pixels.

    Each polygon is an (N, 2) int32 array of x, y vertices, N >= 3; parts too small to have
    three vertices (a pixel, a one-pixel line) are dropped, so a polygon export can lose them.
    """
    m = np.ascontiguousarray(mask, dtype=bool).view(np.uint8)
    x, y, w, h = cv2.boundingRect(m)
    if w == 0 or h == 0:
        return []
    roi = np.pad(m[y:y + h, x:x + w], 1)  # a zero border: parts touching the frame edge close there
    contours, hierarchy = cv2.findContours(roi, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE, offset=(x - 1, y - 1))
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
    """The parts as one outline (zero-width cuts between nearest vertices); None for no parts."""
    if not polygons:
        return None
    joined = polygons[0]
    for poly in polygons[1:]:
        joined = _bridge(joined, poly)
    return joined


def polygon_mask(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """The polygons rasterised (each filled even-odd by cv2.fillPoly, then their union), HxW bool."""
    out = np.zeros(shape, np.uint8)
    for poly in polygons:
        part = np.zeros(shape, np.uint8)
        cv2.fillPoly(part, [np.asarray(poly, np.int32).reshape(-1, 1, 2)], 1)
        out |= part
    return out.astype(bool)


@dataclass
class PolygonFit:
    """How well the written polygons match the masks they come from: mask IoU per annotation."""

    count: int = 0
    total: float = 0.0
    worst: float = 1.0
    below: dict[float, int] = field(default_factory=lambda: {0.98: 0, 0.95: 0})

    def add(self, mask: np.ndarray, polygons: list[np.ndarray]) -> None:
        """Score one mask against its polygons, inside the mask's bounding box (all vertices are in it)."""
        m = np.ascontiguousarray(mask, dtype=bool)
        x, y, w, h = cv2.boundingRect(m.view(np.uint8))
        if w == 0 or h == 0:
            return
        shifted = [np.asarray(p, np.int32) - (x, y) for p in polygons]
        drawn = polygon_mask(shifted, (h, w))
        roi = m[y:y + h, x:x + w]
        union = np.count_nonzero(drawn | roi)
        iou = float(np.count_nonzero(drawn & roi) / union) if union else 1.0
        self.count += 1
        self.total += iou
        self.worst = min(self.worst, iou)
        for t in self.below:
            self.below[t] += iou < t

    def to_dict(self) -> dict[str, float | int]:
        return {"masks": self.count, "mean_iou": round(float(self.total) / self.count, 5) if self.count else None,
                "min_iou": round(float(self.worst), 5) if self.count else None,
                **{f"below_{t:g}": int(n) for t, n in self.below.items()}}


def encode_rle(mask: np.ndarray) -> dict[str, object]:
    """COCO compressed RLE (``{"size": [h, w], "counts": str}``) made by pycocotools."""
    try:
        from pycocotools import mask as coco_mask
    except ImportError:
        raise SiamtrackError("COCO and YouTube-VIS exports need pycocotools: pip install 'siamtrack[labels]'") from None
    rle = coco_mask.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
