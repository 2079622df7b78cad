"""Keyframe corrections: boxes a reviewer gives at later frames, where a track drifted or an
object enters, read from JSON or CSV and checked against the video before any work.

A keyframe is ``frame`` (the source's frame index, as in the output file names), ``object``
(its id: 0..K-1 for the K ``--bbox`` objects; K, K+1, ... for objects that enter later, each
from its first keyframe on) and the box ``x, y, w, h`` in pixels. The streaming loop
re-initialises the object there (``Tracker.reinit``), keeping its id.

JSON: a list of ``{"frame": 40, "object": 0, "x": 10, "y": 20, "w": 50, "h": 60}``.
CSV: rows ``frame,object,x,y,w,h``, with or without that header line.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siamtrack.errors import SiamtrackError

__all__ = ["FIELDS", "Keyframe", "check_keyframes", "keyframe_schedule", "object_count", "read_keyframes"]

FIELDS = ("frame", "object", "x", "y", "w", "h")
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Keyframe:
    frame: int
    obj_id: int
    box: Box


def _keyframe(row: Mapping[str, Any], where: str) -> Keyframe:
    missing = [k for k in FIELDS if k not in row]
    if missing:
        raise SiamtrackError(f"{where}: missing {', '.join(missing)} (a keyframe is {', '.join(FIELDS)})")
    values = {}
    for k in FIELDS:
        v = row[k]
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                raise SiamtrackError(f"{where}: {k} is {row[k]!r}, not a number") from None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SiamtrackError(f"{where}: {k} must be a finite number")
        values[k] = v
    for k in ("frame", "object"):
        if values[k] != int(values[k]) or values[k] < 0:
            raise SiamtrackError(f"{where}: {k} must be a whole number >= 0")
    if values["w"] <= 0 or values["h"] <= 0:
        raise SiamtrackError(f"{where}: the box {values['w']:g}x{values['h']:g} has no area (w and h must be > 0)")
    return Keyframe(int(values["frame"]), int(values["object"]),
                    (float(values["x"]), float(values["y"]), float(values["w"]), float(values["h"])))


def read_keyframes(path: str | Path) -> list[Keyframe]:
    """The keyframes of a JSON or CSV file (by content: JSON starts with ``[``), in file order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SiamtrackError(f"cannot read keyframes {path} ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise SiamtrackError(f"keyframes {path}: not UTF-8 text (JSON or CSV)") from None
    if text.lstrip().startswith(("[", "{")):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SiamtrackError(f"keyframes {path.name}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise SiamtrackError(f"keyframes {path.name}: expected a JSON list of objects with {', '.join(FIELDS)}")
        return [_keyframe(r, f"keyframes {path.name} entry {n}") for n, r in enumerate(rows, 1)]
    lines = [(n, r) for n, r in enumerate(csv.reader(text.splitlines()), 1) if any(c.strip() for c in r)]
    if lines and [c.strip().lower() for c in lines[0][1]] == list(FIELDS):
        lines = lines[1:]
    out = []
    for n, cells in lines:
        if len(cells) != len(FIELDS):
            raise SiamtrackError(f"keyframes {path.name} line {n}: {len(cells)} values; expected "
                                 f"{','.join(FIELDS)}")
        out.append(_keyframe(dict(zip(FIELDS, (c.strip() for c in cells), strict=True)),
                             f"keyframes {path.name} line {n}"))
    return out


def check_keyframes(keyframes: list[Keyframe], n_objects: int, start: int, frames: int | None) -> None:
    """One-line errors for a keyframe on the first frame or outside the frames tracked
    (``start`` .. ``start + frames - 1``; ``frames`` None: a camera, no end), for an unknown
    object (new objects take the next ids, in the order they enter), or a repeated (frame, object)."""
    seen: set[tuple[int, int]] = set()
    known = n_objects
    for kf in sorted(keyframes, key=lambda k: (k.frame, k.obj_id)):
        if kf.frame == start:
            raise SiamtrackError(f"keyframe at frame {kf.frame}: that is the first frame; give its box with --bbox")
        if kf.frame < start or (frames is not None and kf.frame >= start + frames):
            end = f"{start + frames - 1}" if frames is not None else "the end"
            raise SiamtrackError(f"keyframe at frame {kf.frame} is outside the video (frames {start + 1}..{end} "
                                 f"can take one)")
        if (kf.frame, kf.obj_id) in seen:
            raise SiamtrackError(f"two keyframes for object {kf.obj_id} at frame {kf.frame}")
        seen.add((kf.frame, kf.obj_id))
    enters: dict[int, int] = {}
    for kf in keyframes:
        enters[kf.obj_id] = min(kf.frame, enters.get(kf.obj_id, kf.frame))
    for obj_id in sorted(enters):
        if obj_id > known:
            raise SiamtrackError(f"keyframe for unknown object {obj_id}: objects are 0..{n_objects - 1} (--bbox) "
                                 f"and new ones numbered on from {n_objects}")
        if obj_id > n_objects and enters[obj_id] < enters[obj_id - 1]:
            raise SiamtrackError(f"object {obj_id} enters at frame {enters[obj_id]}, before object {obj_id - 1} "
                                 f"(frame {enters[obj_id - 1]}): number new objects in the order they enter")
        known += obj_id == known


def keyframe_schedule(keyframes: list[Keyframe]) -> dict[int, list[tuple[int, Box]]]:
    """Frame index -> (object, box) to re-initialise there, objects in id order (new ones last)."""
    out: dict[int, list[tuple[int, Box]]] = {}
    for kf in sorted(keyframes, key=lambda k: (k.frame, k.obj_id)):
        out.setdefault(kf.frame, []).append((kf.obj_id, kf.box))
    return out


def object_count(n_objects: int, schedule: Mapping[int, list[tuple[int, Box]]] | None) -> int:
    """How many objects a run has: the ``n_objects`` given on the first frame and those that enter later."""
    return max([n_objects, *(obj_id + 1 for fixes in (schedule or {}).values() for obj_id, _ in fixes)])
