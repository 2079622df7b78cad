"""Training-set exports: COCO, YouTube-VIS, YOLO segmentation, CVAT for video 1.1 and MOTChallenge.

Each is a sink fed one frame at a time (``add``) by ``MaskOutputs`` (``export-masks``) or
``RunOutputs`` (``run --export``), on their background writer thread; the frame's image is
written beside the labels where the format expects image files. Formats of one file per
frame (YOLO labels, MOT rows) are complete after each frame; formats of one document (COCO,
YouTube-VIS JSON, CVAT XML) are written atomically by ``close``, which the streaming loop
calls however it ends (Ctrl-C, SIGTERM, an error), so a stopped run leaves a valid dataset of
the frames done.

A ``lost`` object has no annotation on that frame (``outside="1"`` in CVAT, null in
YouTube-VIS); an ``uncertain`` one is exported and flagged where the format has attributes
(COCO ``attributes``, CVAT ``<attribute>``). The first frame and keyframes hold the given box,
filled, as every other output does: they are flagged ``corrected``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from siamtrack.atomic import atomic_path, write_text_atomic
from siamtrack.choices import DATASET_FORMATS
from siamtrack.errors import SiamtrackError
from siamtrack.io.polygons import DEFAULT_TOLERANCE, PolygonFit, encode_rle
from siamtrack.io.sinks import write_image

__all__ = ["DEFAULT_TOLERANCE", "FORMATS", "FRAME_TYPES", "CocoSink", "CvatSink", "DatasetOptions", "LabelSink",
           "MotSink", "YoloSink", "YtvisSink", "object_names", "open_dataset"]

FORMATS = DATASET_FORMATS
FRAME_TYPES = ("jpg", "png", "none")
CORRECTED = ("init", "keyframe")  # polygon_source of a result that is the given box, not a prediction


@dataclass(frozen=True)
class DatasetOptions:
    """What a dataset export is asked for (``--label``, ``--frames``, ``--polygons``, ``--boxes``, tolerance)."""

    labels: tuple[str, ...] = ()
    frames: str | None = None  # jpg, png, none; None: what the format needs (jpg)
    polygons: bool = False  # COCO: polygons instead of RLE
    boxes: bool = False  # CVAT: boxes instead of polygons
    tolerance: float = DEFAULT_TOLERANCE

    def check(self, fmt: str | None, n_objects: int | None = None) -> None:
        """One-line errors for options the format (None: no dataset) does not take, before any work."""
        if fmt not in FORMATS:
            given = [f"--{n}" for n, on in (("label", self.labels), ("frames", self.frames is not None),
                                            ("polygons", self.polygons), ("boxes", self.boxes),
                                            ("polygon-tolerance", self.tolerance != DEFAULT_TOLERANCE)) if on]
            if given:
                raise SiamtrackError(f"{given[0]} is for the dataset formats ({', '.join(FORMATS)})"
                                     + (f", not {fmt}" if fmt else "; add --export FORMAT"))
            return
        if self.polygons and fmt != "coco":
            raise SiamtrackError(f"--polygons is for --format coco ({fmt} {_SEGMENTS[fmt]})")
        if self.boxes and fmt != "cvat":
            raise SiamtrackError(f"--boxes is for --format cvat ({fmt} {_SEGMENTS[fmt]})")
        if n_objects is not None and len(self.labels) not in (0, 1, n_objects):
            raise SiamtrackError(f"{len(self.labels)} --label for {n_objects} objects: give one, or one per --bbox")
        if any(not name.strip() or name != name.strip() for name in self.labels):
            raise SiamtrackError("--label names must be non-empty, without leading or trailing spaces")


_SEGMENTS = {"coco": "writes RLE or polygons", "ytvis": "writes RLE", "yolo": "writes polygons",
             "cvat": "writes polygons or boxes", "mot": "writes boxes"}


def object_names(labels: Sequence[str], n_objects: int) -> list[str]:
    """Each object's class name: ``object`` by default, one name for all, or one per object."""
    if not labels:
        return ["object"] * n_objects
    return list(labels) * n_objects if len(labels) == 1 else list(labels)


@dataclass
class Instance:
    """One object on one frame, as every format sees it."""

    obj_id: int
    state: str  # tracked, uncertain, lost
    corrected: bool  # the given box (first frame, keyframe)
    mask: np.ndarray
    bbox: tuple[float, float, float, float] | None  # x, y, w, h: the mask's bounding box
    area: int
    score: float

    @property
    def visible(self) -> bool:
        return self.state != "lost" and self.area > 0


def _instance(r: Any) -> Instance:
    mask = np.ascontiguousarray(r.mask, dtype=bool)
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    area = int(np.count_nonzero(mask[y:y + h, x:x + w])) if w and h else 0
    score = float(r.score)
    return Instance(r.obj_id, getattr(r, "state", "tracked"), getattr(r, "polygon_source", "") in CORRECTED, mask,
                    (float(x), float(y), float(w), float(h)) if area else None, area,
                    round(score, 6) if np.isfinite(score) else 0.0)


class LabelSink:
    """What the formats share: class names, frame images, polygons and their fit, the frame count.

    ``images`` is the frame folder (relative to ``root``); ``image_name`` names a frame's file.
    """

    images = "images"

    def __init__(self, root: Path, size: tuple[int, int], names: Sequence[str], options: DatasetOptions, *,
                 video: str = "video", fps: float = 25.0) -> None:
        self.root = Path(root)
        self.size = (int(size[0]), int(size[1]))
        self.names = list(names)
        self.classes = list(dict.fromkeys(self.names))  # unique, in object order
        self.options = options
        self.ext = None if options.frames == "none" else (options.frames or "jpg")
        self.video = video
        self.fps = fps
        self.frames = 0
        self.count = 0  # annotations written
        self.fit = PolygonFit()
        self.root.mkdir(parents=True, exist_ok=True)
        if self.ext is not None:
            (self.root / self.images).mkdir(parents=True, exist_ok=True)

    def class_of(self, obj_id: int) -> int:
        """The object's 0-based class index."""
        return self.classes.index(self.names[obj_id])

    def image_name(self, index: int, k: int) -> str:
        """A frame's file name (``index``: the source's frame index, ``k``: its position in the export)."""
        return f"{index:05d}.{self.ext or 'jpg'}"

    def polygons(self, inst: Instance, joined: bool) -> list[np.ndarray]:
        """The object's polygons (one outline when ``joined``), scored against its mask."""
        return self.fit.polygons(inst.mask, self.options.tolerance, joined)

    def add(self, index: int, image: np.ndarray, results: Sequence[Any]) -> None:
        """Write one frame: its image (if the format has them), then its labels."""
        name = self.image_name(index, self.frames)
        if self.ext is not None:
            write_image(self.root / self.images / name, image)
        self._add(index, self.frames, name, [_instance(r) for r in results])
        self.frames += 1

    def _add(self, index: int, k: int, name: str, instances: list[Instance]) -> None:
        raise NotImplementedError

    def close(self) -> dict[str, Any]:
        """Finish the files; what was written (frames, annotations, polygon fit if polygons were made)."""
        out: dict[str, Any] = {"dataset": self.root, "frames": self.frames, "annotations": self.count}
        if self.fit.count:
            out["polygon_fit"] = self.fit.to_dict()
        return out

    def _info(self) -> dict[str, Any]:
        from siamtrack import __version__

        info: dict[str, Any] = {"description": f"siamtrack {__version__}: {self.video}", "version": __version__,
                                "frames": self.frames}
        if self.fit.count:
            info["polygon_tolerance"] = self.options.tolerance
            info["polygon_fit"] = self.fit.to_dict()
        return info


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    try:
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
    except OSError as exc:
        raise SiamtrackError(f"cannot write {path} ({exc.strerror or exc})") from None


class CocoSink(LabelSink):
    """``images/<frame>.jpg`` and ``annotations.json``: COCO instances, RLE (or polygons) per object,
    ``track_id`` per annotation; categories are the ``--label`` names (ids from 1)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._images: list[dict[str, Any]] = []
        self._annotations: list[dict[str, Any]] = []

    def _add(self, index: int, k: int, name: str, instances: list[Instance]) -> None:
        w, h = self.size
        image_id = k + 1
        self._images.append({"id": image_id, "file_name": name, "width": w, "height": h, "frame_index": index})
        for inst in instances:
            if not inst.visible:
                continue
            if self.options.polygons:
                polys = self.polygons(inst, joined=False)
                if not polys:
                    continue
                segmentation: Any = [p.astype(float).ravel().tolist() for p in polys]
            else:
                segmentation = encode_rle(inst.mask)
            self.count += 1
            self._annotations.append({
                "id": self.count, "image_id": image_id, "category_id": self.class_of(inst.obj_id) + 1,
                "segmentation": segmentation, "area": inst.area, "bbox": list(inst.bbox), "iscrowd": 0,
                "track_id": inst.obj_id,
                "attributes": {"uncertain": inst.state == "uncertain", "corrected": inst.corrected,
                               "score": inst.score}})

    def close(self) -> dict[str, Any]:
        _write_json(self.root / "annotations.json", {
            "info": self._info(), "images": self._images, "annotations": self._annotations,
            "categories": [{"id": i + 1, "name": n, "supercategory": n} for i, n in enumerate(self.classes)]})
        return super().close()


class YtvisSink(LabelSink):
    """``JPEGImages/<video>/<frame>.jpg`` and ``instances.json``: YouTube-VIS, one video, one
    annotation per object with an RLE (or null where lost) per frame."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._files: list[str] = []
        self._tracks: dict[int, dict[str, list]] = {}

    @property
    def images(self) -> str:  # type: ignore[override]
        return f"JPEGImages/{self.video}"

    def _add(self, index: int, k: int, name: str, instances: list[Instance]) -> None:
        self._files.append(f"{self.video}/{name}")
        for inst in instances:
            track = self._tracks.setdefault(inst.obj_id, {"segmentations": [None] * k, "bboxes": [None] * k,
                                                          "areas": [None] * k, "states": [None] * k})
            shown = inst.visible
            track["segmentations"].append(encode_rle(inst.mask) if shown else None)
            track["bboxes"].append(list(inst.bbox) if shown else None)
            track["areas"].append(inst.area if shown else None)
            track["states"].append(inst.state)
            self.count += shown

    def close(self) -> dict[str, Any]:
        w, h, n = self.size[0], self.size[1], self.frames
        annotations = []
        for obj_id, track in self._tracks.items():
            pad = n - len(track["areas"])
            annotations.append({"id": obj_id + 1, "video_id": 1, "category_id": self.class_of(obj_id) + 1,
                                "iscrowd": 0, "width": w, "height": h, "length": 1, "track_id": obj_id,
                                **{key: v + [None] * pad for key, v in track.items()}})
        _write_json(self.root / "instances.json", {
            "info": self._info(),
            "videos": [{"id": 1, "name": self.video, "width": w, "height": h, "length": n,
                        "file_names": self._files}],
            "annotations": annotations,
            "categories": [{"id": i + 1, "name": c, "supercategory": c} for i, c in enumerate(self.classes)]})
        return super().close()


class YoloSink(LabelSink):
    """The ultralytics segmentation layout: ``images/<frame>.jpg``, ``labels/<frame>.txt`` (one
    ``class x1 y1 x2 y2 ...`` line per visible object, normalised; an empty file for a frame
    without one) and ``data.yaml`` (``train``/``val``: images, ``names``; no ``path``, so
    ultralytics uses the file's own folder and the dataset can move)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        (self.root / "labels").mkdir(exist_ok=True)
        names = "".join(f"  {i}: {json.dumps(c)}\n" for i, c in enumerate(self.classes))
        write_text_atomic(self.root / "data.yaml", f"# written by siamtrack\ntrain: images\nval: images\n"
                                                   f"nc: {len(self.classes)}\nnames:\n{names}")

    def _add(self, index: int, k: int, name: str, instances: list[Instance]) -> None:
        w, h = self.size
        lines = []
        for inst in instances:
            if not inst.visible:
                continue
            polys = self.polygons(inst, joined=True)
            if not polys:
                continue
            xy = polys[0].astype(np.float64) / (w, h)
            lines.append(f"{self.class_of(inst.obj_id)} " + " ".join(f"{v:.6f}" for v in xy.ravel()))
            self.count += 1
        write_text_atomic(self.root / "labels" / (Path(name).stem + ".txt"), "".join(f"{s}\n" for s in lines))


class CvatSink(LabelSink):
    """``images/frame_NNNNNN.jpg`` and ``annotations.xml``: CVAT for video 1.1, one ``<track>`` per
    object with a polygon (or ``<box>``) on every frame, all keyframes (tracked, not interpolated);
    lost frames are ``outside="1"`` at the last place seen. Attributes: ``uncertain``, ``corrected``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shapes: dict[int, list[dict[str, str]]] = {}
        self._last: dict[int, dict[str, str]] = {}

    def image_name(self, index: int, k: int) -> str:
        return f"frame_{k:06d}.{self.ext or 'jpg'}"

    def _geometry(self, inst: Instance) -> dict[str, str] | None:
        if self.options.boxes:
            x, y, w, h = inst.bbox  # type: ignore[misc]
            return {"xtl": f"{x:.2f}", "ytl": f"{y:.2f}", "xbr": f"{x + w:.2f}", "ybr": f"{y + h:.2f}"}
        polys = self.polygons(inst, joined=True)
        return {"points": ";".join(f"{px:.2f},{py:.2f}" for px, py in polys[0])} if polys else None

    def _add(self, index: int, k: int, name: str, instances: list[Instance]) -> None:
        for inst in instances:
            geometry = self._geometry(inst) if inst.visible else None
            if geometry is not None:
                self._last[inst.obj_id] = geometry
                self.count += 1
            elif inst.obj_id not in self._last:
                continue  # never seen yet: nothing to place an outside shape at
            shape = {"frame": str(k), "keyframe": "1", "outside": "0" if geometry is not None else "1",
                     "occluded": "0", "z_order": "0", **(geometry or self._last[inst.obj_id]),
                     "uncertain": str(inst.state == "uncertain").lower(), "corrected": str(inst.corrected).lower()}
            self._shapes.setdefault(inst.obj_id, []).append(shape)

    def close(self) -> dict[str, Any]:
        from datetime import UTC, datetime

        root = ET.Element("annotations")
        ET.SubElement(root, "version").text = "1.1"
        meta = ET.SubElement(root, "meta")
        task = ET.SubElement(meta, "task")
        now = datetime.now(UTC).isoformat()
        for tag, text in (("id", "0"), ("name", self.video), ("size", str(self.frames)), ("mode", "interpolation"),
                          ("overlap", "0"), ("bugtracker", ""), ("flipped", "False"), ("created", now),
                          ("updated", now), ("start_frame", "0"), ("stop_frame", str(max(self.frames - 1, 0))),
                          ("frame_filter", "")):
            ET.SubElement(task, tag).text = text
        labels = ET.SubElement(task, "labels")
        for name in self.classes:
            label = ET.SubElement(labels, "label")
            ET.SubElement(label, "name").text = name
            ET.SubElement(label, "type").text = "rectangle" if self.options.boxes else "polygon"
            attributes = ET.SubElement(label, "attributes")
            for attr in ("uncertain", "corrected"):
                a = ET.SubElement(attributes, "attribute")
                for tag, text in (("name", attr), ("mutable", "True"), ("input_type", "checkbox"),
                                  ("default_value", "false"), ("values", "false")):
                    ET.SubElement(a, tag).text = text
        original = ET.SubElement(task, "original_size")
        ET.SubElement(original, "width").text = str(self.size[0])
        ET.SubElement(original, "height").text = str(self.size[1])
        ET.SubElement(meta, "dumped").text = now
        tag = "box" if self.options.boxes else "polygon"
        for obj_id, shapes in self._shapes.items():
            track = ET.SubElement(root, "track", id=str(obj_id), label=self.names[obj_id], source="auto")
            for shape in shapes:
                attrs = {key: v for key, v in shape.items() if key not in ("uncertain", "corrected")}
                el = ET.SubElement(track, tag, attrs)
                for attr in ("uncertain", "corrected"):
                    ET.SubElement(el, "attribute", name=attr).text = shape[attr]
        ET.indent(root)
        path = self.root / "annotations.xml"
        try:
            with atomic_path(path) as tmp:
                ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
        except OSError as exc:
            raise SiamtrackError(f"cannot write {path} ({exc.strerror or exc})") from None
        return super().close()


class MotSink(LabelSink):
    """MOTChallenge: ``img1/NNNNNN.jpg`` (1-based), ``gt/gt.txt`` rows ``frame,id,x,y,w,h,conf,-1,-1,-1``
    (1-based frames and ids; conf: the tracker's score, 1 on corrected frames) flushed per frame,
    and ``seqinfo.ini``."""

    images = "img1"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        (self.root / "gt").mkdir(exist_ok=True)
        self._gt = open(self.root / "gt" / "gt.txt", "w")  # noqa: SIM115 - kept open across frames, closed in close()

    def image_name(self, index: int, k: int) -> str:
        return f"{k + 1:06d}.{self.ext or 'jpg'}"

    def _add(self, index: int, k: int, name: str, instances: list[Instance]) -> None:
        rows = []
        for inst in instances:
            if inst.visible:
                x, y, w, h = inst.bbox  # type: ignore[misc]
                conf = 1.0 if inst.corrected else inst.score
                rows.append(f"{k + 1},{inst.obj_id + 1},{x:g},{y:g},{w:g},{h:g},{conf:g},-1,-1,-1\n")
        self._gt.write("".join(rows))
        self._gt.flush()
        self.count += len(rows)

    def close(self) -> dict[str, Any]:
        self._gt.close()
        write_text_atomic(self.root / "seqinfo.ini",
                          f"[Sequence]\nname={self.video}\nimDir={self.images}\nframeRate={self.fps:g}\n"
                          f"seqLength={self.frames}\nimWidth={self.size[0]}\nimHeight={self.size[1]}\n"
                          f"imExt=.{self.ext or 'jpg'}\n")
        return super().close()


_SINKS: dict[str, type[LabelSink]] = {"coco": CocoSink, "ytvis": YtvisSink, "yolo": YoloSink, "cvat": CvatSink,
                                      "mot": MotSink}


def open_dataset(fmt: str, root: Path, size: tuple[int, int], n_objects: int, options: DatasetOptions, *,
                 video: str = "video", fps: float = 25.0) -> LabelSink:
    """The sink of format ``fmt`` writing into ``root`` (created), for ``n_objects`` objects."""
    options.check(fmt, n_objects)
    return _SINKS[fmt](root, size, object_names(options.labels, n_objects), options, video=video, fps=fps)
