"""Frame sources: video files, image folders, globs and cameras, one BGR frame at a time.

Video decoding runs on a background thread with a bounded queue, so decoding overlaps
tracking and memory stays constant however long the video is.
"""

from __future__ import annotations

import glob as globlib
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from siamtrack.errors import SourceError

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Frame:
    index: int
    timestamp: float  # seconds
    image: np.ndarray  # HxWx3 uint8 BGR


def natural_key(text: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def prefetch(iterator: Iterator, depth: int = 8) -> Iterator:
    """Run ``iterator`` on a daemon thread, handing items over through a bounded queue."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def worker() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


class FrameSource:
    """Base: ``name``, ``fps``, ``size`` (w, h), ``count`` (None if unknown); iterate for frames."""

    name: str
    fps: float
    size: tuple[int, int]
    count: int | None

    def frames(self, start: int = 0, max_frames: int | None = None) -> Iterator[Frame]:
        raise NotImplementedError


class ImageSequence(FrameSource):
    """A folder of images or a glob, in natural sort order."""

    def __init__(self, paths: list[Path], name: str, fps: float = 25.0) -> None:
        if not paths:
            raise SourceError(f"{name}: no images found")
        self.paths = paths
        self.name = name
        self.fps = fps
        first = self._read(paths[0])
        self.size = (first.shape[1], first.shape[0])
        self.count = len(paths)

    @staticmethod
    def _read(path: Path) -> np.ndarray:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise SourceError(f"{path}: cannot read image")
        return img

    def frames(self, start: int = 0, max_frames: int | None = None) -> Iterator[Frame]:
        end = len(self.paths) if max_frames is None else min(len(self.paths), start + max_frames)

        def gen() -> Iterator[Frame]:
            for i in range(start, end):
                img = self._read(self.paths[i])
                if (img.shape[1], img.shape[0]) != self.size:
                    raise SourceError(f"{self.paths[i]}: size {img.shape[1]}x{img.shape[0]} differs from the "
                                      f"first image ({self.size[0]}x{self.size[1]})")
                yield Frame(i, i / self.fps, img)

        return prefetch(gen())


class VideoFile(FrameSource):
    """A video decoded by FFmpeg (imageio-ffmpeg): anything FFmpeg reads."""

    def __init__(self, path: Path) -> None:
        import imageio_ffmpeg

        self.path = path
        self.name = path.stem
        try:
            reader = imageio_ffmpeg.read_frames(str(path))
            meta = next(reader)
            reader.close()
        except (RuntimeError, OSError, StopIteration) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            raise SourceError(f"{path}: not a readable video ({first[:120]})") from None
        if not meta.get("size") or not meta.get("fps"):
            raise SourceError(f"{path}: not a video (no video stream)")
        self.size = tuple(int(v) for v in meta["size"])
        self.fps = float(meta["fps"])
        duration = meta.get("duration") or 0
        self.count = int(round(duration * self.fps)) if duration else None

    def frames(self, start: int = 0, max_frames: int | None = None) -> Iterator[Frame]:
        import imageio_ffmpeg

        w, h = self.size

        def gen() -> Iterator[Frame]:
            reader = imageio_ffmpeg.read_frames(str(self.path), pix_fmt="bgr24")
            try:
                next(reader)
                emitted = 0
                for i, raw in enumerate(reader):
                    if i < start:
                        continue
                    if max_frames is not None and emitted >= max_frames:
                        break
                    img = np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)
                    yield Frame(i, i / self.fps, img)
                    emitted += 1
            finally:
                reader.close()

        return prefetch(gen())


class Camera(FrameSource):
    """A live camera through OpenCV."""

    def __init__(self, index: int) -> None:
        self.cap = cv2.VideoCapture(index)
        ok, frame = self.cap.read() if self.cap.isOpened() else (False, None)
        if not ok:
            self.cap.release()
            raise SourceError(f"camera {index} cannot be opened (is one connected and free?)")
        self._first = frame
        self.name = f"camera{index}"
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 30.0)
        self.size = (frame.shape[1], frame.shape[0])
        self.count = None

    def frames(self, start: int = 0, max_frames: int | None = None) -> Iterator[Frame]:
        import time

        t0 = time.perf_counter()
        i = 0
        frame = self._first
        while frame is not None and (max_frames is None or i < max_frames):
            yield Frame(i, time.perf_counter() - t0, frame)
            i += 1
            ok, frame = self.cap.read()
            if not ok:
                break

    def close(self) -> None:
        self.cap.release()


def open_source(spec: str | Path) -> FrameSource:
    """A video file, an image folder, or a glob pattern of images."""
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        paths = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXT), key=lambda p: natural_key(p.name))
        return ImageSequence(paths, path.name or "frames")
    if any(ch in text for ch in "*?["):
        paths = sorted((Path(p) for p in globlib.glob(text) if Path(p).suffix.lower() in IMAGE_EXT),
                       key=lambda p: natural_key(str(p)))
        if not paths:
            raise SourceError(f"{text}: the pattern matches no images")
        return ImageSequence(paths, Path(text).parent.name or "frames")
    if not path.exists():
        raise SourceError(f"{text}: no such file or folder")
    if path.suffix.lower() in IMAGE_EXT:
        return ImageSequence([path], path.stem)
    if not path.is_file():
        raise SourceError(f"{text}: not a file or folder")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise SourceError(f"{text}: cannot read ({exc.strerror})") from None
    return VideoFile(path)
