"""End-to-end CLI tests: outputs of run / export-masks / eval / bench, and one-line errors for user mistakes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from siamtrack.io.sources import open_source
from siamtrack.io.synthetic import make_clip
from tests.conftest import SHARED, need

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "2"}


def cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "siamtrack.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=ENV, timeout=timeout)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("clip")
    gt = make_clip(out, n_frames=12, size=(320, 240))
    return {"dir": out, "video": out / "clip.mp4", "gt": gt}


def box_arg(box) -> str:
    return ",".join(f"{v:g}" for v in box)


def check_run_outputs(out: Path, n_frames: int, size: tuple[int, int], n_objects: int = 1) -> dict:
    tracks = json.loads((out / "tracks.json").read_text())
    assert tracks["meta"]["frames"] == n_frames
    assert set(tracks["objects"]) == {str(i) for i in range(n_objects)}
    for recs in tracks["objects"].values():
        assert [r["frame"] for r in recs] == list(range(recs[0]["frame"], recs[0]["frame"] + n_frames))
        for r in recs:
            assert len(r["box"]) == 4 and len(r["rotated"]["points"]) == 4
            assert {"cx", "cy", "w", "h", "angle"} <= set(r["rotated"])
            assert 0.0 <= r["score"] <= 1.0 and r["mask_area"] >= 0 and "time" in r
    for k in range(n_objects):
        pngs = sorted((out / "masks" / str(k)).glob("*.png"))
        assert len(pngs) == n_frames
        m = cv2.imread(str(pngs[-1]), cv2.IMREAD_UNCHANGED)
        assert m.shape == (size[1], size[0]) and set(np.unique(m)) <= {0, 255}
    video = open_source(out / "annotated.mp4")
    assert video.size == size
    assert sum(1 for _ in video.frames()) == n_frames
    return tracks


@pytest.mark.slow
def test_run_on_generated_clip(clip, synthetic_checkpoint, tmp_path):
    out = tmp_path / "run"
    b = clip["gt"]["init_box"]
    second = (b[0] + 40, b[1] + 30, 40, 50)
    res = cli("run", str(clip["video"]), "--bbox", box_arg(b), "--bbox", box_arg(second), "--checkpoint",
              str(synthetic_checkpoint), "--preset", "davis", "--precision", "fp32", "--out", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    tracks = check_run_outputs(out, 12, (320, 240), n_objects=2)
    assert tracks["meta"]["fps"] == pytest.approx(25.0)
    assert not (out / "tracks.jsonl").exists()


@pytest.mark.slow
def test_run_on_shared_bag_video_and_davis_folder(synthetic_checkpoint, tmp_path):
    bag = need(SHARED / "data" / "demo" / "bag.avi")
    out = tmp_path / "bag"
    res = cli("run", str(bag), "--bbox", "315,140,113,115", "--checkpoint", str(synthetic_checkpoint),
              "--max-frames", "6", "--out", str(out), "--quiet", "--precision", "fp32")
    assert res.returncode == 0, res.stderr
    check_run_outputs(out, 6, (480, 360))
    davis = need(SHARED / "data" / "davis" / "JPEGImages" / "480p" / "blackswan")
    out2 = tmp_path / "davis"
    res = cli("run", str(davis), "--bbox", "127,73,383,312", "--checkpoint", str(synthetic_checkpoint),
              "--max-frames", "5", "--no-video", "--out", str(out2), "--quiet", "--precision", "fp32")
    assert res.returncode == 0, res.stderr
    assert len(list((out2 / "masks" / "0").glob("*.png"))) == 5 and not (out2 / "annotated.mp4").exists()


@pytest.mark.slow
def test_export_masks_davis_palette_scores_with_eval_pred(clip, synthetic_checkpoint, tmp_path):
    """export-masks --format davis writes what eval --pred reads (a DAVIS-like layout built from the clip)."""
    root = tmp_path / "DAVIS"
    img = root / "JPEGImages" / "480p" / "clip"
    ann = root / "Annotations" / "480p" / "clip"
    img.mkdir(parents=True)
    ann.mkdir(parents=True)
    for f in open_source(clip["video"]).frames(0, 6):
        cv2.imwrite(str(img / f"{f.index:05d}.jpg"), f.image)
        cv2.imwrite(str(ann / f"{f.index:05d}.png"), cv2.imread(str(clip["dir"] / "masks" / f"{f.index:05d}.png")))
    pred = tmp_path / "pred" / "clip"
    res = cli("export-masks", str(img), "--bbox", box_arg(clip["gt"]["init_box"]), "--checkpoint",
              str(synthetic_checkpoint), "--out", str(pred), "--format", "davis", "--quiet", "--precision", "fp32")
    assert res.returncode == 0, res.stderr
    assert len(list(pred.glob("*.png"))) == 6
    res = cli("eval", "davis", str(root), "--pred", str(tmp_path / "pred"), "--out", str(tmp_path / "ev"), "--quiet")
    assert res.returncode == 0, res.stderr
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert len(results["sequences"]["clip"]["objects"]["1"]["J_per_frame"]) == 4  # frames 1..4 of 0..5
    assert 0.0 <= results["summary"]["J_mean"] <= 1.0


@pytest.mark.slow
def test_interrupted_run_leaves_playable_video_and_valid_json(synthetic_checkpoint, tmp_path):
    src = tmp_path / "long"
    make_clip(src, n_frames=80, size=(320, 240))
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "siamtrack.cli", "run", str(src / "clip.mp4"), "--bbox",
                             box_arg(json.loads((src / "groundtruth.json").read_text())["init_box"]),
                             "--checkpoint", str(synthetic_checkpoint), "--out", str(out), "--quiet",
                             "--precision", "fp32"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        jl = out / "tracks.jsonl"
        if jl.exists() and len(jl.read_text().splitlines()) >= 6:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode == 130
    tracks = json.loads((out / "tracks.json").read_text())
    done = tracks["meta"]["frames"]
    assert 5 <= done < 80 and tracks["meta"]["interrupted"] is True
    assert sum(1 for _ in open_source(out / "annotated.mp4").frames()) >= done - 1


def test_bad_inputs_are_one_line_errors(tmp_path, clip):
    video = str(clip["video"])
    notvideo = tmp_path / "notes.mp4"
    notvideo.write_text("this is not a video")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    existing = tmp_path / "full"
    existing.mkdir()
    (existing / "x").write_text("x")
    bad_ckpt = tmp_path / "bad.pth"
    bad_ckpt.write_bytes(os.urandom(1000))
    cases = [
        (["run", str(tmp_path / "missing.mp4"), "--bbox", "1,1,5,5"], "no such file"),
        (["run", str(notvideo), "--bbox", "1,1,5,5"], "not a readable video"),
        (["run", str(empty_dir), "--bbox", "1,1,5,5"], "no images"),
        (["run", video, "--bbox", "1,2,3"], "x,y,w,h"),
        (["run", video, "--bbox", "a,b,c,d"], "four numbers"),
        (["run", video, "--bbox", "10,10,0,5"], "zero"),
        (["run", video, "--bbox", "1000,1000,20,20", "--checkpoint", str(bad_ckpt)], "checkpoint"),
        (["run", video, "--bbox", "10,10,20,20", "--model", "no-such-model"], "unknown model"),
        (["run", video, "--bbox", "10,10,20,20", "--checkpoint", str(bad_ckpt)], "bad.pth"),
        (["run", video, "--bbox", "10,10,20,20", "--out", str(existing)], "--overwrite"),
        (["run", video, "--start", "500", "--bbox", "10,10,20,20"], "no frames"),
        (["webcam"], "display"),
    ]
    env_no_display = {k: v for k, v in ENV.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    for args, expected in cases:
        res = subprocess.run([sys.executable, "-m", "siamtrack.cli", *args], capture_output=True, text=True,
                             cwd=tmp_path, env=env_no_display, timeout=120)
        err = res.stderr.strip()
        assert res.returncode != 0, args
        assert "Traceback" not in err, (args, err)
        assert expected.lower() in err.lower(), (args, err)
        assert len(err.splitlines()) == 1, (args, err)
    assert not (tmp_path / "runs").exists()  # nothing written for runs that failed before their first frame


def test_no_display_selection_error(clip, tmp_path):
    env = {k: v for k, v in ENV.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    res = subprocess.run([sys.executable, "-m", "siamtrack.cli", "run", str(clip["video"])], capture_output=True,
                         text=True, cwd=tmp_path, env=env, timeout=60)
    assert res.returncode == 1 and "--bbox" in res.stderr and "Traceback" not in res.stderr


def test_box_outside_frame_is_an_error_and_partly_outside_is_clipped(clip, synthetic_checkpoint, tmp_path):
    res = cli("run", str(clip["video"]), "--bbox", "1000,1000,20,20", "--checkpoint", str(synthetic_checkpoint),
              "--out", str(tmp_path / "a"), "--quiet")
    assert res.returncode == 1 and "outside" in res.stderr and not (tmp_path / "a").exists()
    res = cli("run", str(clip["video"]), "--bbox", "-10,-10,60,60", "--checkpoint", str(synthetic_checkpoint),
              "--out", str(tmp_path / "b"), "--quiet", "--max-frames", "3", "--no-video", "--precision", "fp32")
    assert res.returncode == 0, res.stderr
    assert "clipped" in res.stderr
    meta = json.loads((tmp_path / "b" / "tracks.json").read_text())["meta"]
    assert meta["objects"][0]["init_box"] == [0.0, 0.0, 50.0, 50.0]


def test_help_and_version():
    res = cli("--version")
    assert res.returncode == 0 and "siamtrack" in res.stdout
    for cmd in ("run", "webcam", "export-masks", "weights", "eval", "bench", "train", "demo"):
        res = cli(cmd, "--help")
        assert res.returncode == 0 and "Example" in res.stdout, cmd


def test_weights_list_and_verify(synthetic_checkpoint):
    res = cli("weights", "list")
    assert res.returncode == 0 and "siammask-davis" in res.stdout
    res = cli("weights", "verify", str(synthetic_checkpoint))
    assert res.returncode == 0 and "keys: 356" in res.stdout and "siammask_sharp" in res.stdout


@pytest.mark.slow
def test_eval_davis_end_to_end(synthetic_checkpoint, tmp_path):
    root = need(SHARED / "data" / "davis")
    for tracker, extra in (("siammask", ["--checkpoint", str(synthetic_checkpoint), "--precision", "fp32"]),
                           ("opencv-mil", [])):
        out = tmp_path / tracker
        res = cli("eval", "davis", str(root), "--sequences", "blackswan", "--max-frames", "8", "--tracker", tracker,
                  *extra, "--out", str(out), "--quiet")
        assert res.returncode == 0, res.stderr
        results = json.loads((out / "results.json").read_text())
        s = results["summary"]
        for key in ("J_mean", "J_recall", "J_decay", "F_mean", "F_recall", "F_decay", "JF_mean"):
            assert key in s
        assert 0.0 <= s["J_mean"] <= 1.0 and 0.0 <= s["F_mean"] <= 1.0
        assert len(results["sequences"]["blackswan"]["objects"]["1"]["J_per_frame"]) == 6
        assert (out / "results.md").read_text().count("blackswan") == 1


@pytest.mark.slow
def test_eval_boxes_ope_and_restart(tmp_path):
    root = need(SHARED / "data" / "boxes")
    for extra in ([], ["--restart"]):
        out = tmp_path / ("r" if extra else "o")
        res = cli("eval", "boxes", str(root), "--tracker", "opencv-mil", "--max-frames", "25", *extra, "--out",
                  str(out), "--quiet")
        assert res.returncode == 0, res.stderr
        s = json.loads((out / "results.json").read_text())["summary"]
        if extra:
            assert s["failures"] >= 0 and 0.0 <= s["accuracy"] <= 1.0
        else:
            assert 0.0 <= s["success_auc"] <= 1.0 and 0.0 <= s["precision_20"] <= 1.0


def test_bench_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    res = cli("bench", "--arch", "siammask_lite", "--frames", "6", "--warmup", "1", "--size", "320x240",
              "--precision", "fp32-reference,fp32", "--json", str(out))
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert [r["precision"] for r in data["results"]] == ["fp32-reference", "fp32"]
    for r in data["results"]:
        assert r["gflops_per_frame"] > 0 and r["stages"]["total"]["median_ms"] > 0
        assert set(r["stages"]) >= {"crop", "backbone", "heads", "refine", "post", "total"}
    assert "random weights" in data["note"]
