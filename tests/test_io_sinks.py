"""Sinks: drawing, mask files (binary, DAVIS palette, npz), track records, background writers, crash-safe video."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from siamtrack.errors import SiamtrackError
from siamtrack.geometry import RotatedBox, box_corners, box_mask
from siamtrack.io import sinks
from siamtrack.io.sinks import (
    BackgroundWorker,
    DavisPaletteSink,
    MaskPngSink,
    NpzSink,
    RunOutputs,
    TrackRecords,
    VideoSink,
    color_for,
    davis_palette,
    finalise_tracks,
    read_jsonl,
    render,
)
from siamtrack.io.sources import open_source
from siamtrack.results import TrackResult


def result(obj_id: int, mask: np.ndarray, box=(10, 10, 20, 20), score: float = 0.5) -> TrackResult:
    x, y, w, h = box
    center = (x + w / 2, y + h / 2)
    rot = RotatedBox(box_corners(center, (w, h)), center[0], center[1], w, h, 0.0)
    return TrackResult(obj_id, box, rot, mask, mask.astype(np.float32), score, "mask")


def test_render_tints_the_mask_only_and_draws_the_box():
    frame = np.full((60, 80, 3), 100, np.uint8)
    mask = box_mask((60, 80), (30, 20, 30, 30))
    out = render(frame, [result(2, mask, box=(28, 18, 34, 34))], alpha=0.5)
    expected = (100 * 0.5 + np.array(color_for(2)) * 0.5)
    assert np.abs(out[35, 45].astype(float) - expected).max() <= 1  # inside the mask, away from the outline
    assert (out[55, 5] == 100).all() and (out[35, 5] == 100).all()  # outside both mask and box
    assert (out[18, 40] != 100).any()  # the box's top edge is drawn
    assert (frame == 100).all()  # the input is not modified


@pytest.mark.parametrize("case", ["empty", "full", "outside", "nan"])
def test_render_copes_with_degenerate_targets(case):
    frame = np.full((160, 200, 3), 80, np.uint8)
    mask = np.ones((160, 200), bool) if case == "full" else np.zeros((160, 200), bool)
    box = {"outside": (-500, -500, 10, 10), "nan": (float("nan"), 0, 5, 5)}.get(case, (0, 0, 200, 160))
    out = render(frame, [result(0, mask, box=box)])
    assert out.shape == frame.shape and out.dtype == np.uint8
    if case == "full":
        assert (out[80, 100] != 80).any()
    if case in ("outside", "nan"):
        assert (out == 80).sum() > 0.95 * out.size  # at most the label is drawn


def test_mask_png_sink_writes_frame_sized_0_255_pngs(tmp_path):
    sink = MaskPngSink(tmp_path / "masks")
    a, b = box_mask((30, 40), (5, 5, 10, 10)), np.zeros((30, 40), bool)
    sink.write(7, [(0, a), (1, b)])
    sink.write(8, [(0, b), (1, a)])
    assert sink.count == 4
    got = cv2.imread(str(tmp_path / "masks" / "0" / "00007.png"), cv2.IMREAD_UNCHANGED)
    assert got.shape == (30, 40) and got.dtype == np.uint8 and set(np.unique(got)) == {0, 255}
    assert ((got == 255) == a).all()
    assert not cv2.imread(str(tmp_path / "masks" / "1" / "00007.png"), cv2.IMREAD_UNCHANGED).any()


def test_davis_palette_matches_the_davis_colours():
    pal = davis_palette()
    assert pal[:12] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]  # background, red, green, olive
    assert pal[3 * 255: 3 * 256] == [224, 224, 192]


def test_davis_palette_sink_writes_object_ids_later_wins(tmp_path):
    sink = DavisPaletteSink(tmp_path, (20, 30))
    a, b = box_mask((20, 30), (0, 0, 10, 10)), box_mask((20, 30), (5, 5, 10, 10))
    sink.write(3, [(0, a), (1, b)])
    img = Image.open(tmp_path / "00003.png")
    assert img.mode == "P" and img.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
    label = np.array(img)
    assert label[0, 0] == 1 and label[7, 7] == 2 and label[19, 29] == 0
    assert set(np.unique(label)) == {0, 1, 2}


def test_npz_sink_round_trip_and_no_objects(tmp_path):
    sink = NpzSink(tmp_path, (12, 16))
    m = box_mask((12, 16), (2, 3, 4, 5))
    sink.write(0, [(3, m)])
    sink.write(1, [])
    with np.load(tmp_path / "00000.npz") as d:
        assert d["ids"].tolist() == [3] and d["masks"].dtype == bool and (d["masks"][0] == m).all()
    with np.load(tmp_path / "00001.npz") as d:
        assert d["masks"].shape == (0, 12, 16)


def test_track_records_are_valid_while_running_and_finalised(tmp_path):
    rec = TrackRecords(tmp_path / "t.jsonl", tmp_path / "t.json", {"source": "x", "objects": [{"obj_id": 0}]})
    rec.write(0, 0.0, [{"obj_id": 0, "score": 1.0}])
    rec.write(1, 0.04, [{"obj_id": 0, "score": 0.5}])
    meta, rows = read_jsonl(tmp_path / "t.jsonl")  # readable before close, as after a crash
    assert meta["source"] == "x" and [r["frame"] for r in rows] == [0, 1]
    rec.close({"interrupted": False})
    assert not (tmp_path / "t.jsonl").exists()
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["meta"]["frames"] == 2 and doc["meta"]["schema"] == "siamtrack-tracks/1"
    assert doc["objects"]["0"] == [{"frame": 0, "time": 0.0, "score": 1.0}, {"frame": 1, "time": 0.04, "score": 0.5}]


def test_read_jsonl_drops_a_line_cut_off_by_a_crash(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"meta": {"a": 1}}\n{"frame": 0, "time": 0, "objects": []}\n{"frame": 1, "ti')
    meta, rows = read_jsonl(path)
    assert meta == {"a": 1} and len(rows) == 1


def test_background_worker_keeps_order_and_reports_errors():
    seen = []
    w = BackgroundWorker(seen.append, depth=2)
    for i in range(50):
        w.put(i)
    w.close()
    assert seen == list(range(50))

    def fail(item):
        raise SiamtrackError(f"disk full at {item}")

    w = BackgroundWorker(fail, depth=1)
    with pytest.raises(SiamtrackError, match="disk full at 0"):
        for i in range(100):  # never blocks forever on a dead worker
            w.put(i)
            time.sleep(0.01)
    with pytest.raises(SiamtrackError):
        w.close()


def test_video_sink_rejects_wrong_sizes_and_missing_folders(tmp_path):
    with pytest.raises(SiamtrackError, match="does not exist"):
        VideoSink(tmp_path / "no" / "v.mp4", 25, (32, 32))
    sink = VideoSink(tmp_path / "v.mp4", 25, (32, 32))
    with pytest.raises(SiamtrackError, match="32x32 video"):
        sink.write(np.zeros((16, 32, 3), np.uint8))
    sink.write(np.zeros((32, 32, 3), np.uint8))
    sink.close()
    assert len(list(open_source(tmp_path / "v.mp4"))) == 1


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return kids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the encoder through /proc")
def test_video_survives_a_killed_encoder(tmp_path):
    """Fragmented MP4: killing FFmpeg itself (not just us) still leaves a playable file."""
    before = set(_children(os.getpid()))
    sink = VideoSink(tmp_path / "v.mp4", 25, (64, 48))
    encoder = set(_children(os.getpid())) - before
    assert len(encoder) == 1
    rng = np.random.default_rng(0)
    for _ in range(100):
        sink.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    deadline = time.time() + 20
    while time.time() < deadline and (tmp_path / "v.mp4").stat().st_size < 20000:
        time.sleep(0.1)
    time.sleep(1.0)
    os.kill(encoder.pop(), signal.SIGKILL)
    with pytest.raises(SiamtrackError):
        for _ in range(200):  # the dead pipe surfaces as a one-line error, not a hang
            sink.write(np.zeros((48, 64, 3), np.uint8))
            time.sleep(0.005)
        sink.close()
    assert len(list(open_source(tmp_path / "v.mp4"))) >= 25  # at least the first one-second fragment


def test_run_outputs_write_every_sink_in_frame_order(tmp_path):
    out = RunOutputs(tmp_path, {"objects": [{"obj_id": 0}]}, fps=10, size=(40, 30))
    for i in range(5):
        m = box_mask((30, 40), (i, i, 8, 8))
        out.write(i, i / 10, np.full((30, 40, 3), 60, np.uint8), [result(0, m, box=(i, i, 8, 8))])
    summary = out.close({"interrupted": False})
    assert summary["frames"] == 5 and summary["mask_pngs"] == 5
    doc = json.loads((tmp_path / "tracks.json").read_text())
    assert [r["frame"] for r in doc["objects"]["0"]] == [0, 1, 2, 3, 4]
    assert [r["mask_area"] for r in doc["objects"]["0"]] == [64] * 5
    png = cv2.imread(str(tmp_path / "masks" / "0" / "00003.png"), cv2.IMREAD_UNCHANGED)
    assert png[3, 3] == 255 and png[2, 2] == 0
    video = open_source(tmp_path / "annotated.mp4")
    assert video.size == (40, 30) and video.fps == 10 and len(list(video)) == 5


def test_finalise_recovers_a_killed_runs_jsonl_object_by_object(tmp_path):
    jsonl = tmp_path / "tracks.jsonl"
    rows = [{"meta": {"objects": [{"obj_id": 0}, {"obj_id": 1}]}}]
    rows += [{"frame": i, "time": i / 10, "objects": [{"obj_id": 0, "score": i}, {"obj_id": 1, "score": -i}]}
             for i in range(4)]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"frame": 4, "time"')
    finalise_tracks(jsonl, tmp_path / "tracks.json", {"interrupted": True})
    doc = json.loads((tmp_path / "tracks.json").read_text())
    assert doc["meta"] == {"objects": [{"obj_id": 0}, {"obj_id": 1}], "interrupted": True, "frames": 4}
    assert [r["score"] for r in doc["objects"]["1"]] == [0, -1, -2, -3]
    assert [r["frame"] for r in doc["objects"]["0"]] == [0, 1, 2, 3] and "obj_id" not in doc["objects"]["0"][0]


def test_run_outputs_cope_with_lost_shrunk_and_frame_filling_targets(tmp_path):
    shape = (30, 40)
    out = RunOutputs(tmp_path, {"objects": [{"obj_id": 0}, {"obj_id": 1}, {"obj_id": 2}]}, fps=5, size=(40, 30))
    frame = np.full((30, 40, 3), 90, np.uint8)
    lost = result(0, np.zeros(shape, bool), box=(-60, -60, 10, 10), score=0.0)
    full = result(1, np.ones(shape, bool), box=(0, 0, 40, 30))
    tiny = result(2, box_mask(shape, (20, 15, 1, 1)), box=(15, 10, 10, 10))
    for i in range(3):
        out.write(i, i / 5, frame, [lost, full, tiny])
    out.close()
    doc = json.loads((tmp_path / "tracks.json").read_text())
    assert [doc["objects"][k][0]["mask_area"] for k in ("0", "1", "2")] == [0, 1200, 1]
    assert not read_png(tmp_path / "masks" / "0" / "00002.png").any()
    assert read_png(tmp_path / "masks" / "1" / "00002.png").all()
    assert len(list(open_source(tmp_path / "annotated.mp4"))) == 3


def read_png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_evaluation_reads_and_writes_images_with_the_io_functions(tmp_path):
    from siamtrack.eval import harness
    from siamtrack.io import sources

    assert harness.read_image is sources.read_image and harness.write_label_png is sinks.write_label_png
    label = np.zeros((6, 8), np.uint8)
    label[1:3, 2:5] = 2
    sinks.write_label_png(tmp_path / "a.png", label)
    img = Image.open(tmp_path / "a.png")
    assert img.mode == "P" and (np.array(img) == label).all() and img.getpalette()[6:9] == [0, 128, 0]


def _closes_within(close, seconds: float):
    """Run ``close`` on a thread; (finished in time, what it raised)."""
    import threading

    raised = []

    def target():
        try:
            close()
        except BaseException as exc:
            raised.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    return not t.is_alive(), raised


def test_closing_a_hung_writer_gives_up_after_its_timeout():
    import threading

    release = threading.Event()
    w = BackgroundWorker(lambda item: release.wait(), depth=1, name="stuck writer", close_timeout=0.3)
    w.put(1)  # being handled, forever
    w.put(2)  # fills the queue: the stop marker cannot even be queued
    t0 = time.perf_counter()
    finished, raised = _closes_within(w.close, 10)
    release.set()
    assert finished and 0.25 < time.perf_counter() - t0 < 5
    assert len(raised) == 1 and isinstance(raised[0], sinks.WriterHung) and "stuck writer" in str(raised[0])


def test_run_outputs_finalise_tracks_json_although_the_video_writer_hangs(tmp_path, monkeypatch):
    import threading

    release = threading.Event()
    monkeypatch.setattr(sinks.VideoSink, "_send", lambda self, frame: release.wait())  # an encoder that stalls
    out = RunOutputs(tmp_path, {"objects": [{"obj_id": 0}]}, fps=10, size=(40, 30), close_timeout=0.3)
    for i in range(3):
        out.write(i, i / 10, np.full((30, 40, 3), 60, np.uint8), [result(0, box_mask((30, 40), (i, i, 8, 8)))])
    finished, raised = _closes_within(lambda: out.close({"interrupted": False}), 10)
    release.set()
    assert finished and len(raised) == 1 and "annotated.mp4" in str(raised[0])
    doc = json.loads((tmp_path / "tracks.json").read_text())
    assert doc["meta"]["frames"] == 3 and not (tmp_path / "tracks.jsonl").exists()


def test_mask_outputs_write_like_run_outputs(tmp_path):
    out = sinks.MaskOutputs(sinks.NpzSink(tmp_path, (30, 40)))
    for i in range(4):
        out.write(i, i / 10, np.zeros((30, 40, 3), np.uint8), [result(0, box_mask((30, 40), (i, i, 8, 8)))])
    assert out.close({"interrupted": False}) == {"frames": 4, "mask_files": 4}
    with np.load(tmp_path / "00002.npz") as d:
        assert d["ids"].tolist() == [0] and d["masks"][0].sum() == 64 and d["masks"][0][2, 2]
