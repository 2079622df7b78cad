"""Frame sources: video files, image folders, globs and cameras, one BGR frame at a time.

Decoding runs on a background thread with a bounded queue, so it overlaps tracking and
memory stays constant however long the video is. Every failure a user can cause (a
missing file, a file that is not a video, an empty video, unreadable images) raises
``SourceError`` with a one-line message.
"""

from __future__ import annotations

import glob as globlib
import logging
import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from siamtrack.errors import SourceError

__all__ = ["Camera", "Frame", "FrameSource", "ImageSequence", "VideoFile", "camera_name", "display_rotation",
           "natural_key", "open_source", "prefetch", "probe", "read_image", "seekable"]

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_FOLDER_FPS = 25.0
T = TypeVar("T")


@dataclass(frozen=True)
class Frame:
    """One decoded frame; ``index`` counts from the first frame of the source, not of the run."""

    index: int
    timestamp: float  # seconds: index / fps for files and folders, wall-clock for cameras
    image: np.ndarray  # HxWx3 uint8 BGR


def natural_key(text: str) -> list[int | str]:
    """Sort key putting ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def prefetch(iterator: Iterator[T], depth: int = 8) -> Iterator[T]:
    """Run ``iterator`` on a daemon thread, handing items over through a bounded queue.

    Exceptions reach the consumer in order. Closing the returned generator (or dropping
    it) stops the worker and closes ``iterator``, so a decoder process does not outlive it.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def hand_over(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def worker() -> None:
        try:
            for item in iterator:
                if not hand_over(item):
                    return
            hand_over(done)
        except BaseException as exc:  # re-raised in the consumer
            hand_over(exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def consume() -> Iterator[T]:
        thread = threading.Thread(target=worker, name="siamtrack-decode", daemon=True)
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

    return consume()


class FrameSource:
    """What the commands read from: ``name``, ``fps``, ``size`` (w, h), ``count`` (None if unknown),
    ``rotation`` (degrees of display rotation the decoder applied: frames come upright)."""

    name: str
    fps: float
    size: tuple[int, int]
    count: int | None
    rotation: int = 0

    def notice(self) -> str | None:
        """One line a user should read before giving boxes, or None."""
        if not self.rotation:
            return None
        w, h = self.size
        return (f"{self.name}: the video is stored rotated ({self.rotation} degrees display rotation); frames are "
                f"read upright as shown by players ({w}x{h}), and boxes and masks are in that orientation")

    def frames(self, start: int = 0, max_frames: int | None = None) -> Iterator[Frame]:
        """Frames ``start``, ``start + 1``, ... (at most ``max_frames``), decoded ahead on a thread."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def expected(self, start: int = 0, max_frames: int | None = None) -> int | None:
        """How many frames ``frames(start, max_frames)`` should give, when that is known."""
        if self.count is None:
            return max_frames
        left = max(self.count - start, 0)
        return left if max_frames is None else min(left, max_frames)

    def close(self) -> None:
        """Release what the source holds open (cameras); files need nothing."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_image(path: Path) -> np.ndarray:
    """An image file as HxWx3 uint8 BGR; a ``SourceError`` naming it when it cannot be decoded."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SourceError(f"{path}: cannot read image")
    return img


class ImageSequence(FrameSource):
    """A folder of images or a glob, in natural sort order; all images must have one size."""

    def __init__(self, paths: list[Path], name: str, fps: float = DEFAULT_FOLDER_FPS) -> None:
        if not paths:
            raise SourceError(f"{name}: no images found")
        self.paths = paths
        self.name = name
        self.path = paths[0].parent
        self.fps = fps
        first = read_image(paths[0])
        self.size = (first.shape[1], first.shape[0])
        self.count = len(paths)

    def frames(self, start: int = 0, max_frames: int | None = None) -> Iterator[Frame]:
        end = len(self.paths) if max_frames is None else min(len(self.paths), start + max_frames)

        def decode() -> Iterator[Frame]:
            for i in range(start, end):
                img = read_image(self.paths[i])
                if (img.shape[1], img.shape[0]) != self.size:
                    raise SourceError(f"{self.paths[i]}: size {img.shape[1]}x{img.shape[0]} differs from the "
                                      f"first image ({self.size[0]}x{self.size[1]})")
                yield Frame(i, i / self.fps, img)

        return prefetch(decode())


def _ffmpeg_problem(path: Path, text: str) -> str:
    """One line saying why FFmpeg could not open ``path``, from its stderr."""
    lines = [line.strip() for line in text.splitlines()]
    if any(line.startswith("Stream #") and "Video:" in line for line in lines):
        return f"{path}: the video has no frames"
    if any(line.startswith("Input #") for line in lines):
        return f"{path}: not a video (the file has no video stream)"
    reasons = [m.group(1) for line in lines if (m := re.search(r"Error opening input[^:]*: (.+)$", line))]
    return f"{path}: not a readable video ({reasons[-1] if reasons else 'FFmpeg cannot decode it'})"


SEEKABLE_DEMUXERS = ("mov", "matroska", "avi")  # FFmpeg's names: mp4/mov/m4v/3gp, mkv/webm, avi


def probe(path: Path) -> str:
    """What ``ffmpeg -i`` says about ``path`` (its stderr), or "" when FFmpeg cannot be run."""
    import subprocess

    import imageio_ffmpeg

    try:
        proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True,
                              text=True, errors="replace", timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stderr


def seekable(path: Path, info: str | None = None) -> bool:
    """Whether FFmpeg lands exactly on frame ``i`` of ``path`` when asked for time ``i / fps``.

    The container must have an index FFmpeg seeks in exactly, and the video a constant frame
    rate: its average rate ("fps") equal to the rate of its timestamps ("tbr"). A variable
    frame rate (phones) or a guessed time base (streams copied between containers) fail that.
    ``info``: ``probe(path)``, when already run.
    """
    info = probe(path) if info is None else info
    demuxer = re.search(r"^Input #0, (\w+)", info, re.MULTILINE)
    video = re.search(r"Stream #0:\d+.*: Video: .*", info)
    rates = re.findall(r" ([\d.]+k?) (fps|tbr)\b", video.group(0)) if video else []
    fps = [r for r, kind in rates if kind == "fps"]
    tbr = [r for r, kind in rates if kind == "tbr"]
    return bool(demuxer and demuxer.group(1) in SEEKABLE_DEMUXERS and fps and fps == tbr)


def display_rotation(info: str) -> int:
    """The display rotation in degrees (0, 90, 180, 270) that ``probe`` output states, 0 if none."""
    found = re.search(r"rotation of (-?[\d.]+) degrees", info, re.IGNORECASE)
    return int(round(float(found.group(1)))) % 360 if found else 0


class _SizeNotice(logging.Filter):
    """Drops imageio-ffmpeg's own note that a rotated video's frame size differs from the stored one:
    siamtrack says it once, in its words (``FrameSource.notice``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is different from the source frame size" not in record.getMessage()


logging.getLogger("imageio_ffmpeg").addFilter(_SizeNotice())


class VideoFile(FrameSource):
    """A video decoded by FFmpeg (imageio-ffmpeg): mp4, avi, mkv, webm, mov, anything FFmpeg reads.

    ``count`` is estimated from the container's duration (for progress only); timestamps
    are ``index / fps``. A later start is reached by seeking (FFmpeg's accurate seek: from the
    keyframe before it, decoding only the frames in between) in constant-frame-rate videos in
    containers that FFmpeg seeks in exactly (MP4/MOV, Matroska/WebM, AVI); elsewhere (MPEG-TS,
    raw streams, variable frame rates) the frames before it are decoded and dropped, as a seek
    there can land frames away.
    """

    def __init__(self, path: Path) -> None:
        import imageio_ffmpeg

        self.path = path
        self.name = path.stem
        try:
            reader = imageio_ffmpeg.read_frames(str(path))
            meta = next(reader)
            reader.close()
        except (RuntimeError, OSError, StopIteration) as exc:
            raise SourceError(_ffmpeg_problem(path, str(exc))) from None
        if not meta.get("size") or not meta.get("fps"):
            raise SourceError(f"{path}: not a video (the file has no video stream)")
        self._info = probe(path)
        self.rotation = display_rotation(self._info)
        w, h = (int(v) for v in meta["size"])
        self.size = (w, h)
        self.fps = float(meta["fps"])
        duration = meta.get("duration") or 0
        self.count = int(round(duration * self.fps)) if duration else None
        self._seekable: bool | None = None  # probed on the first later start

    def seek_params(self, start: int) -> tuple[list[str], int]:
        """FFmpeg input options reaching frame ``start``, and the index of the first frame they give.

        Frame ``i`` starts at ``i / fps``; seeking half a frame earlier lands on frame ``start``
        whatever the rounding of the timestamps. Where a time's position is not trusted (no
        duration, see ``seekable``) the options decode from the first frame.
        """
        if start <= 0 or self.count is None:
            return [], 0
        if self._seekable is None:
            self._seekable = seekable(self.path, self._info)
        if not self._seekable:
            return [], 0
        return ["-ss", f"{(start - 0.5) / self.fps:.6f}"], start

    def frames(self, start: int = 0, max_frames: int | None = None) -> Iterator[Frame]:
        import imageio_ffmpeg

        w, h = self.size
        seek, seeked_to = self.seek_params(start)

        def decode() -> Iterator[Frame]:
            reader = imageio_ffmpeg.read_frames(str(self.path), pix_fmt="bgr24", input_params=seek)
            index = seeked_to - 1
            try:
                next(reader)
                emitted = 0
                for index, raw in enumerate(reader, seeked_to):
                    if index < start:
                        continue
                    if max_frames is not None and emitted >= max_frames:
                        break
                    yield Frame(index, index / self.fps, np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3))
                    emitted += 1
            except (RuntimeError, OSError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else "decoder stopped"
                raise SourceError(f"{self.path}: decoding failed after frame {index} ({first[:120]})") from None
            finally:
                reader.close()

        return prefetch(decode())


def camera_name(spec: int | str) -> str:
    """``camera0`` for an index, the last part of a device or URL otherwise (``video2``, ``stream``)."""
    if isinstance(spec, int):
        return f"camera{spec}"
    return Path(str(spec).rstrip("/")).stem or "camera"


class Camera(FrameSource):
    """A live camera through OpenCV: an index, a device path or a stream URL (anything
    ``cv2.VideoCapture`` opens); frames are read when asked for (no queue: no added latency)."""

    def __init__(self, index: int | str) -> None:
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # backends print probing noise
        try:
            self.cap = cv2.VideoCapture(index)
            ok, frame = self.cap.read() if self.cap.isOpened() else (False, None)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not ok:
            self.cap.release()
            raise SourceError(f"camera {index} cannot be opened (is one connected and free?)")
        self._first: np.ndarray | None = frame
        self.name = camera_name(index)
        self.path = None
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 30.0)
        self.size = (frame.shape[1], frame.shape[0])
        self.count = None

    def frames(self, start: int = 0, max_frames: int | None = None) -> Iterator[Frame]:
        t0 = time.perf_counter()
        i = 0
        frame, self._first = self._first, None
        while max_frames is None or i < max_frames:
            if frame is None:
                ok, frame = self.cap.read()
                if not ok:
                    return
            yield Frame(i, time.perf_counter() - t0, frame)
            frame = None
            i += 1

    def close(self) -> None:
        self.cap.release()


def open_source(spec: str | Path) -> FrameSource:
    """A video file, an image folder (natural order), a single image, or a glob pattern of images."""
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        paths = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXT and p.is_file()),
                       key=lambda p: natural_key(p.name))
        return ImageSequence(paths, path.resolve().name or "frames")
    if not path.exists() and any(ch in text for ch in "*?["):
        paths = sorted((Path(p) for p in globlib.glob(str(path)) if Path(p).suffix.lower() in IMAGE_EXT),
                       key=lambda p: natural_key(str(p)))
        if not paths:
            raise SourceError(f"{text}: the pattern matches no images")
        return ImageSequence(paths, paths[0].parent.resolve().name or "frames")
    if not path.exists():
        raise SourceError(f"{text}: no such file or folder")
    if not path.is_file():
        raise SourceError(f"{text}: not a file or folder")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise SourceError(f"{text}: cannot read ({exc.strerror})") from None
    if path.suffix.lower() in IMAGE_EXT:
        return ImageSequence([path], path.stem)
    return VideoFile(path)
