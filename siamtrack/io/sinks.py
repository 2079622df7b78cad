"""Output sinks: annotated video, mask PNGs (binary or DAVIS palette), npz, and track records.

Every sink writes as frames arrive and can be closed at any point (Ctrl-C, crash) leaving
valid files for the frames done: the video is fragmented MP4 (playable without a final
index, even if the encoder is killed), track records are JSON Lines flushed per frame.
Slow work (PNG and H.264 encoding, drawing) runs on background threads behind bounded
queues, so it overlaps tracking and memory stays constant.

Sinks take tracking results duck-typed: anything with ``obj_id``, ``mask`` (HxW bool),
``score``, ``rotated`` (None, or with ``points`` 4x2), ``to_dict()`` and optionally ``state``,
as ``siamtrack.tracker.TrackResult``. A lost object's mask is empty and its rotated box None.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import cv2
import numpy as np
from PIL import Image

from siamtrack.atomic import atomic_path
from siamtrack.errors import SiamtrackError

__all__ = ["BackgroundWorker", "DavisPaletteSink", "MaskOutputs", "MaskPngSink", "NpzSink", "RunOutputs",
           "TrackRecords", "VideoSink", "WriterHung", "color_for", "davis_palette", "finalise_tracks", "iter_jsonl",
           "read_jsonl", "render", "write_image", "write_label_png"]

T = TypeVar("T")
CLOSE_TIMEOUT = 60.0  # seconds a writer may take to finish its queue (a few frames) when closed
TRACKS_SCHEMA = "siamtrack-tracks/1"
COLORS_BGR = [(60, 180, 255), (80, 220, 100), (255, 120, 60), (200, 80, 240), (40, 230, 230), (120, 120, 255),
              (255, 200, 80), (160, 255, 160)]


class Result(Protocol):
    obj_id: int
    mask: np.ndarray
    score: float

    @property
    def rotated(self) -> Any: ...

    def to_dict(self) -> dict[str, Any]: ...


def color_for(obj_id: int) -> tuple[int, int, int]:
    """The BGR colour an object keeps in every output."""
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


def _label_origin(points: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int]:
    """Above the box's top-left corner, kept inside the frame."""
    x = int(np.clip(points[:, 0].min(), 2, max(shape[1] - 60, 2)))
    y = int(np.clip(points[:, 1].min() - 6, 14, max(shape[0] - 4, 14)))
    return x, y


def _label(out: np.ndarray, text: str, origin: tuple[int, int], color: tuple[int, int, int]) -> None:
    cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)


def render(frame: np.ndarray, results: Sequence[Result], alpha: float = 0.45) -> np.ndarray:
    """A copy of the frame with each object's mask tinted in its colour, its rotated box and "id score".

    An ``uncertain`` object's label says so, as does a keyframe's (whose box also gets a white
    halo); a ``lost`` one has no mask or box, only "id lost"
    in its colour in the top-left corner. Only the mask's bounding rectangle is blended, so
    cost follows object size, not frame size.
    """
    out = frame.copy()
    for r in results:
        mask = np.ascontiguousarray(r.mask, dtype=bool).view(np.uint8)
        x, y, w, h = cv2.boundingRect(mask)
        if w == 0 or h == 0:
            continue
        roi = out[y:y + h, x:x + w]
        tinted = cv2.addWeighted(roi, 1 - alpha, np.full_like(roi, color_for(r.obj_id)), alpha, 0)
        roi[...] = cv2.copyTo(tinted, mask[y:y + h, x:x + w], roi)  # in place where OpenCV can; same result
    corner = 0
    for r in results:
        color = color_for(r.obj_id)
        state = getattr(r, "state", "tracked")
        if r.rotated is None or state == "lost":
            _label(out, f"{r.obj_id} lost", (8, 18 + 18 * corner), color)
            corner += 1
            continue
        points = np.asarray(r.rotated.points, dtype=np.float64).reshape(4, 2)
        if not np.isfinite(points).all():
            continue
        corners = [np.round(points).astype(np.int32).reshape(-1, 1, 2)]
        keyframe = getattr(r, "polygon_source", None) == "keyframe"
        if keyframe:  # a reviewer's box: a white halo under the object's colour
            cv2.polylines(out, corners, True, (255, 255, 255), 6, cv2.LINE_AA)
        cv2.polylines(out, corners, True, color, 2, cv2.LINE_AA)
        label = (f"{r.obj_id} {float(r.score):.2f}" + (" uncertain" if state == "uncertain" else "")
                 + (" keyframe" if keyframe else ""))
        _label(out, label, _label_origin(points, out.shape), color)
    return out


class WriterHung(SiamtrackError):
    """A background writer that did not finish within its close timeout."""


class BackgroundWorker(Generic[T]):
    """Items handled one by one, in order, on a daemon thread behind a bounded queue.

    ``put`` blocks while the queue is full (back-pressure keeps memory constant) and
    re-raises, in the caller, the first error the handler hit; ``close`` drains the queue,
    giving up (with an error) on a handler still busy after ``close_timeout`` seconds, so a
    hung writer (a stalled disk, a stuck encoder) cannot hang the program's exit.
    """

    _STOP = object()

    def __init__(self, handle: Callable[[T], None], depth: int = 8, name: str = "siamtrack-writer",
                 close_timeout: float = CLOSE_TIMEOUT) -> None:
        self._handle = handle
        self.name = name
        self.close_timeout = close_timeout
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            if self._error is not None:
                continue  # drain without work so producers never block on a dead worker
            try:
                self._handle(item)
            except BaseException as exc:
                self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        while True:
            self._check()
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Finish the queued items, stop the thread, and raise the handler's error if there was one."""
        if self._thread.is_alive():
            deadline = time.monotonic() + self.close_timeout
            with contextlib.suppress(queue.Full):  # a full queue of a hung handler: reported just below
                self._queue.put(self._STOP, timeout=self.close_timeout)
            self._thread.join(max(deadline - time.monotonic(), 0.0))
            if self._thread.is_alive():
                raise WriterHung(f"{self.name}: still writing after {self.close_timeout:g} s; gave up "
                                 f"(its output may lack the last frames)")
        self._check()


def _ffmpeg_writer(path: Path, fps: float, size: tuple[int, int], pix_fmt_in: str, crf: int, preset: str,
                   timeout: float) -> Generator[None, Any, None]:
    import imageio_ffmpeg

    # H.264 4:2:0 needs even sides; 4:4:4 keeps odd-sized frames exactly the input size.
    # Fragments of at most a second (not only at keyframes, which x264 puts 250 frames apart)
    # bound what a killed encoder loses to the last second; each is flushed to disk at once.
    pix_fmt = "yuv420p" if pix_fmt_in == "yuv420p" else "yuv444p"
    writer = imageio_ffmpeg.write_frames(
        str(path), size, fps=fps, codec="libx264", pix_fmt_in=pix_fmt_in, pix_fmt_out=pix_fmt, quality=None,
        bitrate=None, macro_block_size=1, ffmpeg_timeout=timeout,
        output_params=["-crf", str(crf), "-preset", preset,
                       "-movflags", "+frag_keyframe+empty_moov+default_base_moof", "-frag_duration", "1000000",
                       "-flush_packets", "1",
                       # what OpenCV's and FFmpeg's default conversions use: BT.601, limited range
                       "-colorspace", "smpte170m", "-color_primaries", "smpte170m", "-color_trc", "smpte170m",
                       "-color_range", "tv"],
    )
    writer.send(None)  # starts FFmpeg
    return writer


class VideoSink:
    """H.264 MP4 (same size and fps as given) through imageio-ffmpeg, fed from a background thread.

    The MP4 is fragmented: a file cut off at any point (Ctrl-C, a killed encoder) stays playable.
    """

    def __init__(self, path: Path, fps: float, size: tuple[int, int], *, depth: int = 8, crf: int = 23,
                 preset: str = "superfast", close_timeout: float = CLOSE_TIMEOUT) -> None:
        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        self.frames = 0
        if not self.path.parent.is_dir():
            raise SiamtrackError(f"cannot write {self.path}: the folder {self.path.parent} does not exist")
        # Even-sized frames go over the pipe as I420 converted by OpenCV: half the bytes, and
        # about 1.3 ms a 480p frame cheaper than FFmpeg's own conversion from BGR.
        self._i420 = self.size[0] % 2 == 0 and self.size[1] % 2 == 0
        self._writer = _ffmpeg_writer(self.path, fps, self.size, "yuv420p" if self._i420 else "bgr24", crf, preset,
                                      close_timeout)
        self._worker: BackgroundWorker[np.ndarray] = BackgroundWorker(self._send, depth, f"video writer ({self.path})",
                                                                      close_timeout)

    def _send(self, frame: np.ndarray) -> None:
        data = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420) if self._i420 else np.ascontiguousarray(frame)
        try:
            self._writer.send(data)
        except OSError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "FFmpeg stopped"
            raise SiamtrackError(f"cannot write {self.path} ({first[:160]})") from None

    def write(self, frame: np.ndarray) -> None:
        if frame.shape[:2] != (self.size[1], self.size[0]):
            raise SiamtrackError(f"frame of {frame.shape[1]}x{frame.shape[0]} for a {self.size[0]}x{self.size[1]} "
                                 f"video")
        self._worker.put(frame)
        self.frames += 1

    def close(self) -> None:
        """Finish the queued frames and FFmpeg (killed if it does not exit within the close timeout).

        If the feeding thread is hung inside the encoder's pipe, the encoder is left to end
        with this process (its pipe then closes): closing it here would wait on that thread.
        """
        try:
            self._worker.close()
        except WriterHung:
            raise
        except BaseException:
            self._close_writer()
            raise
        self._close_writer()

    def _close_writer(self) -> None:
        log = logging.getLogger("imageio_ffmpeg")
        level = log.level
        log.setLevel(logging.ERROR)  # an empty video is the caller's business, not a warning
        try:
            self._writer.close()
        finally:
            log.setLevel(level)


def write_image(path: Path, image: np.ndarray) -> None:
    """An image file (PNG, JPEG, by the suffix); a one-line error when it cannot be written."""
    try:
        ok = cv2.imwrite(str(path), image)
    except cv2.error:
        ok = False
    if not ok:
        raise SiamtrackError(f"cannot write {path}")


Masks = Sequence[tuple[int, np.ndarray]]  # (object id, HxW bool mask) per object


class _MaskSink:
    """A sink of masks only: ``add`` (what ``MaskOutputs`` calls on every sink) passes them to ``write``."""

    def write(self, index: int, masks: Masks) -> None:
        raise NotImplementedError

    def add(self, index: int, image: np.ndarray, results: Sequence[Result]) -> None:
        self.write(index, [(r.obj_id, r.mask) for r in results])


class MaskPngSink(_MaskSink):
    """``<root>/<object>/<frame:05d>.png``: one 0/255 frame-sized PNG per object and frame."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.count = 0
        self._made: set[int] = set()

    def write(self, index: int, masks: Masks) -> None:
        for obj_id, mask in masks:
            folder = self.root / str(obj_id)
            if obj_id not in self._made:
                folder.mkdir(parents=True, exist_ok=True)
                self._made.add(obj_id)
            write_image(folder / f"{index:05d}.png", np.asarray(mask, dtype=bool).astype(np.uint8) * 255)
            self.count += 1

    def close(self) -> None:
        """Nothing buffered: every PNG is complete once written."""


def write_label_png(path: Path, label: np.ndarray) -> None:
    """An 8-bit palette PNG of object ids with the DAVIS palette, as DAVIS annotations are stored."""
    img = Image.frombytes("P", (label.shape[1], label.shape[0]), np.ascontiguousarray(label, np.uint8).tobytes())
    img.putpalette(davis_palette())
    try:
        img.save(path)
    except OSError as exc:
        raise SiamtrackError(f"cannot write {path} ({exc.strerror or exc})") from None


class DavisPaletteSink(_MaskSink):
    """``<root>/<frame:05d>.png``: palette images with object ids 1..K, as DAVIS annotations are stored.

    Where objects overlap, the later id wins (as in DAVIS, one label per pixel).
    """

    def __init__(self, root: Path, shape: tuple[int, int]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.shape = shape
        self.count = 0

    def write(self, index: int, masks: Masks) -> None:
        label = np.zeros(self.shape, dtype=np.uint8)
        for obj_id, mask in masks:
            label[np.asarray(mask, dtype=bool)] = obj_id + 1
        write_label_png(self.root / f"{index:05d}.png", label)
        self.count += 1

    def close(self) -> None:
        """Nothing buffered."""


class NpzSink(_MaskSink):
    """``<root>/<frame:05d>.npz``: ``masks`` (K, H, W) bool and ``ids`` (K,) int32, compressed."""

    def __init__(self, root: Path, shape: tuple[int, int]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.shape = shape
        self.count = 0

    def write(self, index: int, masks: Masks) -> None:
        ids = np.array([i for i, _ in masks], dtype=np.int32)
        stack = np.stack([np.asarray(m, dtype=bool) for _, m in masks]) if masks else np.zeros((0, *self.shape), bool)
        path = self.root / f"{index:05d}.npz"
        try:
            np.savez_compressed(path, masks=stack, ids=ids)
        except OSError as exc:
            raise SiamtrackError(f"cannot write {path} ({exc.strerror or exc})") from None
        self.count += 1

    def close(self) -> None:
        """Nothing buffered."""


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a ``tracks.jsonl``, one at a time; a last line cut off by a crash is dropped."""
    with open(path) as f:
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                return  # only the last line can be partial: every line is flushed whole


def read_jsonl(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The metadata and frame records of a ``tracks.jsonl`` (e.g. left by a killed run)."""
    meta: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for row in iter_jsonl(path):
        if "meta" in row:
            meta = row["meta"]
        else:
            rows.append(row)
    return meta, rows


def finalise_tracks(jsonl: Path, final: Path, extra_meta: dict[str, Any] | None = None) -> Path:
    """Frame-major JSON Lines -> the object-major ``tracks.json``, streamed (one pass per object)
    so memory does not grow with the video, and written atomically: interrupted, it leaves
    the JSON Lines and no partial or temporary file."""
    meta: dict[str, Any] = {}
    frames = 0
    ids: dict[str, None] = {}
    for row in iter_jsonl(jsonl):
        if "meta" in row:
            meta = row["meta"]
            ids.update((str(o["obj_id"]), None) for o in meta.get("objects", []))
        else:
            frames += 1
            ids.update((str(r["obj_id"]), None) for r in row["objects"])
    meta = {**meta, **(extra_meta or {}), "frames": frames}
    with atomic_path(final) as tmp, open(tmp, "w") as out:
        out.write('{\n "meta": ' + json.dumps(meta, allow_nan=False) + ',\n "objects": {')
        for k, obj_id in enumerate(ids):
            out.write(("," if k else "") + f"\n  {json.dumps(obj_id)}: [")
            sep = "\n   "
            for row in iter_jsonl(jsonl):
                for rec in row.get("objects", ()):
                    if str(rec["obj_id"]) == obj_id:
                        entry = {"frame": row["frame"], "time": row["time"],
                                 **{key: v for key, v in rec.items() if key != "obj_id"}}
                        out.write(sep + json.dumps(entry, allow_nan=False))
                        sep = ",\n   "
            out.write("\n  ]")
        out.write("\n }\n}\n")
    return final


class TrackRecords:
    """Per-frame records as JSON Lines while running; ``tracks.json`` when finalised.

    If the process dies before ``close`` (a crash, SIGKILL), ``tracks.jsonl`` stays: one JSON
    object per line, the first holding the run metadata, each later one a frame.
    """

    def __init__(self, jsonl: Path, final: Path, meta: dict[str, Any]) -> None:
        self.jsonl = Path(jsonl)
        self.final = Path(final)
        self.meta = {"schema": TRACKS_SCHEMA, **meta}
        self._f = open(self.jsonl, "w")  # noqa: SIM115 - kept open across frames, closed in close()
        self._line({"meta": self.meta})
        self.frames = 0

    def _line(self, row: dict[str, Any]) -> None:
        self._f.write(json.dumps(row, allow_nan=False) + "\n")
        self._f.flush()

    def write(self, index: int, timestamp: float, records: list[dict[str, Any]]) -> None:
        self._line({"frame": index, "time": round(timestamp, 4), "objects": records})
        self.frames += 1

    def close(self, extra_meta: dict[str, Any] | None = None) -> Path:
        """Rewrite the JSON Lines as one ``tracks.json`` (written atomically) and remove them."""
        self._f.close()
        finalise_tracks(self.jsonl, self.final, extra_meta)
        self.jsonl.unlink()
        return self.final


class RunOutputs:
    """Everything ``siamtrack run`` writes for one frame, written in frame order on one background thread.

    ``out/tracks.jsonl`` (-> ``tracks.json``), ``out/masks/<object>/<frame>.png``,
    ``out/annotated.mp4`` and, with ``labels`` (a ``siamtrack.io.labels`` sink), a training set;
    a frame counts as done once all of them hold it.
    """

    def __init__(self, out_dir: Path, meta: dict[str, Any], *, fps: float, size: tuple[int, int],
                 video: bool = True, masks: bool = True, labels: Any = None, depth: int = 8,
                 close_timeout: float = CLOSE_TIMEOUT) -> None:
        self.out_dir = Path(out_dir)
        self.records = TrackRecords(self.out_dir / "tracks.jsonl", self.out_dir / "tracks.json", meta)
        self.masks = MaskPngSink(self.out_dir / "masks") if masks else None
        self.labels = labels
        self.video = (VideoSink(self.out_dir / "annotated.mp4", fps, size, close_timeout=close_timeout) if video
                      else None)
        self._worker: BackgroundWorker[tuple] = BackgroundWorker(self._write, depth, "output writer", close_timeout)

    def _write(self, item: tuple) -> None:
        index, timestamp, image, results, annotated = item
        self.records.write(index, timestamp, [r.to_dict() for r in results])
        if self.masks is not None:
            self.masks.write(index, [(r.obj_id, r.mask) for r in results])
        if self.labels is not None:
            self.labels.add(index, image, results)
        if self.video is not None:
            self.video.write(annotated if annotated is not None else render(image, results))

    def write(self, index: int, timestamp: float, image: np.ndarray, results: Sequence[Result],
              annotated: np.ndarray | None = None) -> None:
        """Queue one frame (``annotated``: the drawn frame when the caller already has it)."""
        self._worker.put((index, timestamp, image, list(results), annotated))

    @property
    def frames(self) -> int:
        return self.records.frames

    def close(self, extra_meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """Flush and finalise every output, even after an error (which is then re-raised)."""
        dataset = None
        try:
            self._worker.close()
        finally:
            try:
                if self.video is not None:
                    self.video.close()
            finally:
                try:
                    self.records.close(extra_meta)
                finally:
                    if self.labels is not None:
                        dataset = self.labels.close()
        return {"frames": self.records.frames, "tracks": self.records.final,
                "video": self.video.path if self.video is not None else None,
                "mask_pngs": self.masks.count if self.masks is not None else 0, "dataset": dataset}


class MaskOutputs:
    """What ``siamtrack export-masks`` writes: each frame into one sink (``MaskPngSink``,
    ``DavisPaletteSink``, ``NpzSink`` or a ``siamtrack.io.labels`` dataset), in frame order on a
    background thread; written and closed like ``RunOutputs``, so the same streaming loop feeds both."""

    def __init__(self, sink: Any, *, depth: int = 8, close_timeout: float = CLOSE_TIMEOUT) -> None:
        self.sink = sink
        self.frames = 0
        self._worker: BackgroundWorker[tuple] = BackgroundWorker(self._write, depth, "mask writer", close_timeout)

    def _write(self, item: tuple) -> None:
        self.sink.add(*item)
        self.frames += 1

    def write(self, index: int, timestamp: float, image: np.ndarray, results: Sequence[Result],
              annotated: np.ndarray | None = None) -> None:
        """Queue one frame (the time and drawing are not written)."""
        self._worker.put((index, image, list(results)))

    def close(self, extra_meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the queued frames and close the sink (a dataset writes its files then; ``extra_meta``
        has no file to go to), even after an error, which is then re-raised."""
        try:
            self._worker.close()
        finally:
            written = self.sink.close() or {}
        return {"frames": self.frames, "mask_files": self.sink.count, **written}
