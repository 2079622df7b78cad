"""Frame sources: natural order, globs, video decoding (sizes, fps, BGR order, ranges) and one-line errors."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from siamtrack.errors import SourceError
from siamtrack.io.sinks import VideoSink
from siamtrack.io.sources import Camera, natural_key, open_source, prefetch


def numbered_images(folder: Path, names: list[str], size: tuple[int, int] = (40, 30)) -> None:
    """Images whose flat grey level is the number in their name (so order can be read back)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        level = int("".join(ch for ch in name if ch.isdigit()))
        cv2.imwrite(str(folder / name), np.full((size[1], size[0], 3), level, np.uint8))


def write_video(path: Path, images: list[np.ndarray], fps: float = 25.0) -> None:
    sink = VideoSink(path, fps, (images[0].shape[1], images[0].shape[0]))
    for im in images:
        sink.write(im)
    sink.close()


def test_natural_key_orders_numbers_by_value():
    assert sorted(["f10.png", "f2.png", "F1.png"], key=natural_key) == ["F1.png", "f2.png", "f10.png"]


def test_folder_is_read_in_natural_order_with_indices_and_timestamps(tmp_path):
    numbered_images(tmp_path / "seq", ["10.png", "2.png", "1.png", "30.png"])
    (tmp_path / "seq" / "notes.txt").write_text("not an image")
    src = open_source(tmp_path / "seq")
    assert (src.name, src.size, src.count, src.fps) == ("seq", (40, 30), 4, 25.0)
    got = list(src.frames())
    assert [int(f.image[0, 0, 0]) for f in got] == [1, 2, 10, 30]
    assert [f.index for f in got] == [0, 1, 2, 3]
    assert [f.timestamp for f in got] == pytest.approx([0, 0.04, 0.08, 0.12])
    part = list(src.frames(start=1, max_frames=2))
    assert [(f.index, int(f.image[0, 0, 0])) for f in part] == [(1, 2), (2, 10)]
    assert src.expected(1, 2) == 2 and src.expected(3) == 1


def test_glob_selects_matching_images_in_natural_order(tmp_path):
    numbered_images(tmp_path / "mix", ["a11.jpg", "a3.jpg", "b5.jpg", "a100.png"])
    src = open_source(str(tmp_path / "mix" / "a*.jpg"))
    assert [int(round(f.image[0, 0, 0])) for f in src] == [3, 11]
    assert src.name == "mix"


def test_video_round_trip_keeps_size_fps_order_and_bgr(tmp_path):
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200)] * 4  # blue, green, red in BGR
    images = [np.full((48, 64, 3), c, np.uint8) for c in colors]
    write_video(tmp_path / "v.mp4", images, fps=12.5)
    src = open_source(tmp_path / "v.mp4")
    assert (src.name, src.size, src.fps, src.count) == ("v", (64, 48), 12.5, 12)
    got = list(src.frames())
    assert len(got) == 12 and got[0].image.shape == (48, 64, 3) and got[0].image.dtype == np.uint8
    for f, c in zip(got, colors, strict=True):
        assert np.abs(f.image[24, 32].astype(int) - c).max() <= 6
    part = list(src.frames(start=5, max_frames=3))
    assert [f.index for f in part] == [5, 6, 7]
    assert part[0].timestamp == pytest.approx(5 / 12.5)
    assert np.argmax(part[0].image[24, 32]) == np.argmax(colors[5])


def test_odd_sized_video_keeps_its_size(tmp_path):
    write_video(tmp_path / "odd.mp4", [np.full((47, 63, 3), 90, np.uint8)] * 3)
    src = open_source(tmp_path / "odd.mp4")
    assert src.size == (63, 47) and len(list(src)) == 3


def test_single_image_is_a_one_frame_source(tmp_path):
    numbered_images(tmp_path, ["still7.png"])
    src = open_source(tmp_path / "still7.png")
    assert src.count == 1 and int(next(iter(src)).image[0, 0, 0]) == 7


def audio_only_file(path: Path) -> Path:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc",
                    "-t", "0.3", str(path)], check=True)
    return path


def empty_video_file(path: Path) -> Path:
    VideoSink(path, 25, (32, 32)).close()
    return path


def _mixed_sizes(folder: Path) -> Path:
    numbered_images(folder, ["1.png"], (40, 30))
    numbered_images(folder, ["2.png"], (30, 40))
    return folder


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p / "missing.mp4", "no such file or folder"),
    (lambda p: (p / "notes.mp4").write_text("hello") and p / "notes.mp4", "not a readable video"),
    (lambda p: audio_only_file(p / "sound.m4a"), "no video stream"),
    (lambda p: empty_video_file(p / "empty.mp4"), "has no frames"),
    (lambda p: (p / "none").mkdir() or p / "none", "no images found"),
    (lambda p: p / "nothing*.png", "matches no images"),
    (lambda p: (p / "bad.jpg").write_bytes(b"\xff\xd8 broken") and p / "bad.jpg", "cannot read image"),
])
def test_unusable_sources_raise_one_line_source_errors(tmp_path, make, message):
    spec = make(tmp_path)
    with pytest.raises(SourceError) as info:
        src = open_source(spec)
        next(iter(src))  # the empty video fails only when it yields nothing
        raise AssertionError("no error")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_header_only_video_is_reported_as_empty(tmp_path):
    """An encoder stopped before its first frame leaves a header-only MP4: an error, not a hang."""
    with pytest.raises(SourceError, match="has no frames"):
        open_source(empty_video_file(tmp_path / "e.mp4"))


def test_image_of_another_size_fails_when_reached(tmp_path):
    src = open_source(_mixed_sizes(tmp_path / "seq"))
    frames = src.frames()
    assert next(frames).index == 0
    with pytest.raises(SourceError, match="differs from the first image"):
        next(frames)


def test_prefetch_keeps_order_forwards_errors_and_is_bounded():
    produced = []

    def items():
        for i in range(100):
            produced.append(i)
            yield i

    it = prefetch(items(), depth=4)
    assert next(it) == 0
    time.sleep(0.2)
    assert len(produced) <= 1 + 4 + 2  # the one handed over, a full queue, one waiting to be put
    assert list(it) == list(range(1, 100))

    def failing():
        yield 1
        raise ValueError("decoder broke")

    it = prefetch(failing())
    assert next(it) == 1
    with pytest.raises(ValueError, match="decoder broke"):
        next(it)


def test_closing_prefetch_stops_the_worker_and_closes_the_source():
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    it = prefetch(endless(), depth=2)
    assert next(it) == 0
    it.close()
    assert closed.wait(2.0)


def test_missing_camera_is_a_source_error():
    with pytest.raises(SourceError, match="camera 97 cannot be opened"):
        Camera(97)


def test_start_seeks_in_indexed_containers_and_gives_the_frames_a_full_decode_gives(tmp_path, monkeypatch):
    images = [np.random.default_rng(i).integers(0, 255, (48, 64, 3), np.uint8) for i in range(30)]
    write_video(tmp_path / "clip.mp4", images)
    for name in ("clip.mkv", "clip.ts", "copied.avi"):  # the same H.264 frames in other containers
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(tmp_path / "clip.mp4"),
                        "-c", "copy", str(tmp_path / name)], check=True)
    writer = imageio_ffmpeg.write_frames(str(tmp_path / "clip.avi"), (64, 48), fps=25, codec="mpeg4",
                                         pix_fmt_in="bgr24", quality=None, macro_block_size=1)
    writer.send(None)
    for im in images:
        writer.send(im)
    writer.close()
    real, seeks = imageio_ffmpeg.read_frames, []

    def recording(path, *args, input_params=None, **kwargs):
        seeks.append(input_params or [])
        return real(path, *args, input_params=input_params, **kwargs)

    monkeypatch.setattr(imageio_ffmpeg, "read_frames", recording)
    # MPEG-TS has no index and the copied AVI a guessed time base (600 fps): a seek would land
    # frames away (or past the end), so those two decode from the first frame
    for name, seeks_there in (("clip.mp4", True), ("clip.mkv", True), ("clip.avi", True), ("clip.ts", False),
                              ("copied.avi", False)):
        src = open_source(tmp_path / name)
        every = [f.image for f in src]
        assert len(every) == 30
        for start in (1, 7, 13, 29):
            seeks.clear()
            got = list(src.frames(start, 3))
            assert [f.index for f in got] == list(range(start, min(start + 3, 30))), (name, start)
            assert all((f.image == every[f.index]).all() for f in got), (name, start)
            assert seeks == [["-ss", f"{(start - 0.5) / 25:.6f}"] if seeks_there else []], (name, start)
        assert list(src.frames(30, 3)) == []
