"""Training data readers: each turns one on-disk layout into object tracks.

A :class:`Track` is a list of frames with, per frame, the object's box (x, y, w, h) and
optionally a mask reference; frames where the object is absent are marked invalid.
Frames and masks are read lazily (see :class:`FrameCache`).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from siamtrack.errors import SiamtrackError
from siamtrack.io.annotations import (
    groundtruth_file,
    list_images,
    mask_box,
    object_mask,
    parse_groundtruth,
    read_label_mask,
)


@dataclass
class Track:
    """One object through a sequence (a still image is a one-frame track)."""

    name: str
    frames: list[Path]
    boxes: np.ndarray  # (N, 4) x, y, w, h; rows of NaN where the object is absent
    masks: list[Path | None] = field(default_factory=list)  # per frame, or empty for box-only tracks
    mask_id: int | None = None  # palette index of this object (None: any non-zero pixel)
    mask_loader: Callable[[int], np.ndarray] | None = None  # renders frame i's mask (COCO polygons)

    @property
    def has_masks(self) -> bool:
        return bool(self.masks) or self.mask_loader is not None

    @property
    def valid(self) -> np.ndarray:
        return np.flatnonzero(np.isfinite(self.boxes[:, 0]) & (self.boxes[:, 2] > 1) & (self.boxes[:, 3] > 1))


def _tracks_from_masks(name: str, frames: list[Path], masks: list[Path]) -> list[Track]:
    """One track per object id found in a sequence of (binary or palette) masks."""
    labels = [read_label_mask(m) for m in masks]
    binary = all(set(np.unique(lb).tolist()) <= {0, 255} for lb in labels)
    ids: list[int | None] = [None] if binary else sorted({int(v) for lb in labels for v in np.unique(lb) if v})
    tracks = []
    for oid in ids:
        boxes = np.full((len(frames), 4), np.nan)
        for i, lb in enumerate(labels):
            box = mask_box(object_mask(lb, oid))
            if box is not None:
                boxes[i] = box
        suffix = "" if oid is None else f"/{oid}"
        tracks.append(Track(f"{name}{suffix}", frames, boxes, list(masks), oid))
    return tracks


def davis_tracks(root: str | Path, resolution: str = "480p", sequences: Iterable[str] | None = None,
                 exclude: Iterable[str] = (), split: str | None = None) -> list[Track]:
    """DAVIS layout (``JPEGImages/<res>/<seq>``, ``Annotations/<res>/<seq>``) or the per-sequence
    layout of ``shared/train_data/videos`` (``<seq>/JPEGImages``, ``<seq>/Annotations``).

    ``split`` names a file under ``root`` listing the sequences to use, one per line (DAVIS's
    ``ImageSets/2017/train.txt``), so a full DAVIS download trains on its train split only.
    """
    root = Path(root)
    if split is not None:
        listed = (root / split).read_text().split()
        sequences = listed if sequences is None else [s for s in sequences if s in set(listed)]
    if (root / "JPEGImages").is_dir():
        img_root, ann_root = root / "JPEGImages", root / "Annotations"
        if (img_root / resolution).is_dir():
            img_root, ann_root = img_root / resolution, ann_root / resolution
        names = sorted(p.name for p in img_root.iterdir() if p.is_dir())
        pairs = {n: (img_root / n, ann_root / n) for n in names}
    else:
        pairs = {p.name: (p / "JPEGImages", p / "Annotations") for p in sorted(root.iterdir())
                 if (p / "JPEGImages").is_dir() and (p / "Annotations").is_dir()}
    if not pairs:
        raise SiamtrackError(f"{root}: no DAVIS-layout sequences found")
    wanted = set(sequences) if sequences is not None else None
    tracks = []
    for name, (img_dir, ann_dir) in pairs.items():
        if (wanted is not None and name not in wanted) or name in set(exclude):
            continue
        frames = [f for f in list_images(img_dir) if (ann_dir / (f.stem + ".png")).is_file()]
        tracks += _tracks_from_masks(name, frames, [ann_dir / (f.stem + ".png") for f in frames])
    return tracks


def youtube_vos_tracks(root: str | Path) -> list[Track]:
    """YouTube-VOS layout: ``JPEGImages/<vid>``, palette ``Annotations/<vid>`` (every 5th frame), meta.json."""
    root = Path(root)
    meta = json.loads((root / "meta.json").read_text())["videos"]
    tracks = []
    for vid, info in sorted(meta.items()):
        labels: dict[str, np.ndarray] = {}  # each annotation read once, whatever the number of objects
        for oid, obj in sorted(info["objects"].items(), key=lambda kv: int(kv[0])):
            frames = [root / "JPEGImages" / vid / f"{f}.jpg" for f in obj["frames"]]
            masks = [root / "Annotations" / vid / f"{f}.png" for f in obj["frames"]]
            boxes = np.full((len(frames), 4), np.nan)
            for i, (name, m) in enumerate(zip(obj["frames"], masks, strict=True)):
                if name not in labels:
                    labels[name] = read_label_mask(m)
                box = mask_box(object_mask(labels[name], int(oid)))
                if box is not None:
                    boxes[i] = box
            tracks.append(Track(f"{vid}/{oid}", frames, boxes, masks, int(oid)))
    return tracks


def box_tracks(root: str | Path) -> list[Track]:
    """Box-only sequences: ``<seq>/frames|img/*.jpg`` (or images in ``<seq>``) + ``groundtruth.txt``."""
    tracks = []
    for seq in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        gt = groundtruth_file(seq)
        if gt is None:
            continue
        img_dir = next((seq / d for d in ("frames", "img") if (seq / d).is_dir()), seq)
        frames = list_images(img_dir)
        boxes = parse_groundtruth(gt.read_text())
        n = min(len(frames), len(boxes))
        tracks.append(Track(seq.name, frames[:n], boxes[:n]))
    return tracks


def coco128_tracks(root: str | Path, min_fraction: float = 0.002) -> list[Track]:
    """``shared/train_data/images/coco128-seg``: one single-frame track per instance mask."""
    root = Path(root)
    tracks = []
    for line in (root / "instances.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) < 8 or not parts[1].isdigit():
            continue
        image, kk, frac = parts[0], int(parts[1]), float(parts[7])
        if frac < min_fraction:
            continue
        stem = Path(image).stem
        mask = root / "masks" / f"{stem}_{kk:02d}.png"
        box = mask_box(read_label_mask(mask))
        if box is None:
            continue
        tracks.append(Track(f"coco/{stem}_{kk:02d}", [root / "images" / f"{stem}.jpg"],
                            np.asarray([box], dtype=np.float64), [mask]))
    return tracks


def coco_json_tracks(annotations: str | Path, images: str | Path, min_area: float = 400.0) -> list[Track]:
    """COCO instances JSON via pycocotools (optional): masks are rendered on first use."""
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise SiamtrackError("reading COCO JSON needs pycocotools: pip install pycocotools") from None
    coco = COCO(str(annotations))
    tracks = []
    for ann in coco.loadAnns(coco.getAnnIds(iscrowd=False)):
        if ann["area"] < min_area:
            continue
        info = coco.loadImgs(ann["image_id"])[0]
        tracks.append(Track(f"coco/{ann['id']}", [Path(images) / info["file_name"]],
                            np.asarray([ann["bbox"]], dtype=np.float64), mask_loader=partial(_coco_mask, coco, ann)))
    return tracks


def _coco_mask(coco, ann: dict, index: int) -> np.ndarray:
    return coco.annToMask(ann).astype(np.uint8) * 255


DATASET_READERS = {
    "davis": davis_tracks,
    "youtube_vos": youtube_vos_tracks,
    "boxes": box_tracks,
    "coco128": coco128_tracks,
    "coco": coco_json_tracks,
}


class FrameCache:
    """Decoded frames and masks, kept up to ``max_bytes`` (least recently used evicted)."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0

    def _get(self, key: tuple, load) -> np.ndarray:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = load()
        self._items[key] = value
        self._bytes += value.nbytes
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.nbytes
        return value

    def frame(self, path: Path) -> np.ndarray:
        def load() -> np.ndarray:
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                raise SiamtrackError(f"{path}: cannot read image")
            return img

        return self._get(("f", str(path)), load)

    def mask(self, track: Track, index: int) -> np.ndarray | None:
        if track.mask_loader is not None:
            return self._get(("m", track.name, index), lambda: track.mask_loader(index))
        if not track.masks or track.masks[index] is None:
            return None
        path = track.masks[index]
        return self._get(("m", str(path), track.mask_id), lambda: object_mask(read_label_mask(path), track.mask_id))
