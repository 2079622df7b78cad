"""Readers for annotation files shared by evaluation and training: image folders, label PNGs,
box ground truth (OTB ``x,y,w,h`` and VOT 8-number polygons)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from siamtrack.errors import SiamtrackError
from siamtrack.io.sources import IMAGE_EXT, natural_key


def list_images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXT), key=lambda p: natural_key(p.name))


def read_label_mask(path: Path) -> np.ndarray:
    """Palette indices for 'P' PNGs, grey values otherwise (DAVIS-2016 masks are 0/255)."""
    with Image.open(path) as im:
        return np.array(im if im.mode in ("P", "L") else im.convert("L"))


def object_mask(label: np.ndarray, mask_id: int | None) -> np.ndarray:
    """Binary uint8 0/255 mask of one object."""
    hit = label > 0 if mask_id is None else label == mask_id
    return hit.astype(np.uint8) * 255


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Inclusive bounding box (x, y, w, h) of the non-zero pixels, or None if empty."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)


def parse_polygons(text: str) -> tuple[np.ndarray, bool]:
    """Ground-truth lines (``x,y,w,h`` or 8-number polygons; comma, tab or space separated)
    -> (N, 4, 2) corner polygons and whether the file holds rotated polygons."""
    polys, rotated = [], False
    for line in text.strip().splitlines():
        vals = [float(v) for v in re.split(r"[,\s]+", line.strip()) if v]
        if len(vals) == 8:
            rotated = True
            polys.append(np.asarray(vals).reshape(4, 2))
        elif len(vals) == 4:
            x, y, w, h = vals
            polys.append(np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]]))
        else:
            raise SiamtrackError(f"groundtruth line has {len(vals)} numbers (expected 4 or 8): {line!r}")
    return np.asarray(polys, dtype=np.float64).reshape(-1, 4, 2), rotated


def parse_groundtruth(text: str) -> np.ndarray:
    """Ground-truth lines -> (N, 4) axis-aligned x, y, w, h (polygons: min/max of the corners)."""
    polys, _ = parse_polygons(text)
    lo, hi = polys.min(axis=1), polys.max(axis=1)
    return np.concatenate([lo, hi - lo], axis=1)


def groundtruth_file(seq: Path) -> Path | None:
    return next((seq / n for n in ("groundtruth.txt", "groundtruth_rect.txt") if (seq / n).is_file()), None)
