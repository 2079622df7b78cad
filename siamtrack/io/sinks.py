"""Output sinks: annotated video, mask PNGs (binary or DAVIS palette), npz, and track records.

Every sink writes as frames arrive and can be closed at any point (Ctrl-C, crash) leaving
valid files for the frames done: the video is fragmented MP4 (playable without a final
index), track records are JSON Lines flushed per frame.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

COLORS_BGR = [(60, 180, 255), (80, 220, 100), (255, 120, 60), (200, 80, 240), (40, 230, 230), (120, 120, 255),
              (255, 200, 80), (160, 255, 160)]


def color_for(obj_id: int) -> tuple[int, int, int]:
    return COLORS_BGR[obj_id % len(COLORS_BGR)]


def davis_palette() -> list[int]:
    """The DAVIS annotation palette (index 1 red, 2 green, ...; bit-interleaved like PASCAL VOC)."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def render(frame: np.ndarray, objects: Sequence[dict[str, Any]], alpha: float = 0.45) -> np.ndarray:
    """Draw masks (tinted), rotated boxes and "id score" labels on a copy of the frame.

    Each object is ``{"obj_id", "mask" (HxW bool or None), "points" (4, 2), "score"}``.
    """
    out = frame.copy()
    for obj in objects:
        color = np.array(color_for(obj["obj_id"]), dtype=np.float32)
        mask = obj.get("mask")
        if mask is not None and mask.any():
            region = out[mask].astype(np.float32)
            out[mask] = (region * (1 - alpha) + color * alpha).astype(np.uint8)
    for obj in objects:
        color = color_for(obj["obj_id"])
        pts = np.round(np.asarray(obj["points"])).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [pts], True, color, 2, cv2.LINE_AA)
        x, y = pts[:, 0, 0].min(), pts[:, 0, 1].min()
        label = f"{obj['obj_id']} {obj['score']:.2f}"
        cv2.putText(out, label, (int(max(x, 2)), int(max(y - 6, 14))), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, label, (int(max(x, 2)), int(max(y - 6, 14))), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1,
                    cv2.LINE_AA)
    return out


class VideoSink:
    """H.264 MP4 through imageio-ffmpeg, encoded on a background thread, fragmented for crash safety."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], depth: int = 8) -> None:
        import imageio_ffmpeg

        self.path = path
        self.frames = 0
        self._writer = imageio_ffmpeg.write_frames(
            str(path), size, fps=fps, codec="libx264", pix_fmt_in="bgr24", pix_fmt_out="yuv420p", quality=None,
            bitrate=None, macro_block_size=2,
            output_params=["-crf", "20", "-preset", "veryfast",
                           "-movflags", "+frag_keyframe+empty_moov+default_base_moof"],
        )
        self._writer.send(None)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._writer.send(np.ascontiguousarray(item))
            except BaseException as exc:
                self._error = exc
                return

    def write(self, frame: np.ndarray) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(frame)
        self.frames += 1

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._writer.close()


class MaskPngSink:
    """``masks/<object>/<frame:05d>.png``: one 0/255 PNG per object and frame."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def write(self, index: int, obj_id: int, mask: np.ndarray) -> None:
        folder = self.root / f"{obj_id}"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{index:05d}.png"), mask.astype(np.uint8) * 255)
        self.count += 1

    def close(self) -> None:
        """Nothing buffered: every PNG is complete once written."""


class DavisPaletteSink:
    """``<frame:05d>.png`` palette images with object ids 1..K, as DAVIS annotations are stored."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.palette = davis_palette()
        self.count = 0

    def write_frame(self, index: int, masks: Sequence[tuple[int, np.ndarray]], shape: tuple[int, int]) -> None:
        label = np.zeros(shape, dtype=np.uint8)
        for obj_id, mask in masks:
            label[mask] = obj_id + 1
        img = Image.fromarray(label, mode="P")
        img.putpalette(self.palette)
        img.save(self.root / f"{index:05d}.png")
        self.count += 1

    def close(self) -> None:
        """Nothing buffered."""


class NpzSink:
    """``<frame:05d>.npz`` with ``masks`` (K, H, W) bool and ``ids`` (K,), compressed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def write_frame(self, index: int, masks: Sequence[tuple[int, np.ndarray]], shape: tuple[int, int]) -> None:
        ids = np.array([i for i, _ in masks], dtype=np.int32)
        stack = np.stack([m for _, m in masks]) if masks else np.zeros((0, *shape), dtype=bool)
        np.savez_compressed(self.root / f"{index:05d}.npz", masks=stack.astype(bool), ids=ids)
        self.count += 1

    def close(self) -> None:
        """Nothing buffered."""


class TrackRecords:
    """Per-frame records as JSON Lines while running; ``tracks.json`` when finalised.

    If the process dies before ``close`` (a crash, SIGKILL), ``tracks.jsonl`` stays: one JSON
    object per line, the first holding the run metadata, each later one a frame.
    """

    def __init__(self, jsonl: Path, final: Path, meta: dict[str, Any]) -> None:
        self.jsonl = jsonl
        self.final = final
        self.meta = meta
        self._f = open(jsonl, "w")  # noqa: SIM115 - kept open across frames, closed in close()
        self._f.write(json.dumps({"meta": meta}) + "\n")
        self._f.flush()
        self.frames = 0

    def write(self, index: int, timestamp: float, records: list[dict[str, Any]]) -> None:
        self._f.write(json.dumps({"frame": index, "time": round(timestamp, 4), "objects": records}) + "\n")
        self._f.flush()
        self.frames += 1

    def close(self, extra_meta: dict[str, Any] | None = None) -> None:
        """Rewrite the JSON Lines as one ``tracks.json`` (objects -> list of per-frame records)."""
        self._f.close()
        objects: dict[str, list[dict[str, Any]]] = {}
        meta = dict(self.meta)
        with open(self.jsonl) as f:
            for line in f:
                row = json.loads(line)
                if "meta" in row:
                    continue
                for rec in row["objects"]:
                    entry = {"frame": row["frame"], "time": row["time"], **{k: v for k, v in rec.items()
                                                                             if k != "obj_id"}}
                    objects.setdefault(str(rec["obj_id"]), []).append(entry)
        meta.update(extra_meta or {})
        meta["frames"] = self.frames
        tmp = self.final.with_name(self.final.name + ".tmp")
        tmp.write_text(json.dumps({"meta": meta, "objects": objects}, indent=1) + "\n")
        tmp.replace(self.final)
        self.jsonl.unlink()  # everything is in tracks.json now
