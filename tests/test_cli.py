"""End-to-end CLI tests: outputs of run / export-masks / eval, help, and one-line errors for user mistakes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from siamtrack import __version__
from siamtrack.cli import COMMANDS
from siamtrack.cli import cli as cli_group
from siamtrack.commands import _common
from siamtrack.eval import baselines
from siamtrack.io.sources import open_source
from siamtrack.io.synthetic import make_clip
from tests.conftest import SHARED, default_sigint, need

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
                             "--precision", "fp32"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=default_sigint)
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


def test_every_command_has_help_with_an_example_and_the_version():
    runner = CliRunner()
    result = runner.invoke(cli_group, ["--version"])
    assert result.exit_code == 0 and result.output == f"siamtrack, version {__version__}\n"
    for cmd in COMMANDS:
        result = runner.invoke(cli_group, [cmd, "--help"])
        assert result.exit_code == 0 and "Example" in result.output and f"siamtrack {cmd} " in result.output, cmd


def test_weights_list_and_verify(synthetic_checkpoint):
    res = cli("weights", "list")
    assert res.returncode == 0 and "siammask-davis" in res.stdout
    res = cli("weights", "verify", str(synthetic_checkpoint))
    assert res.returncode == 0 and "keys: 356" in res.stdout and "siammask_sharp" in res.stdout


class ScriptedTracker:
    """Answers each frame with a scripted box (and its filled box as the mask); the frame's index
    is read from its grey level (``STEP`` per frame), so re-initialisations do not shift the script."""

    model_name = arch = "scripted"
    precision = "n/a"
    device = "cpu"
    preset = None

    def __init__(self, boxes: dict[int, tuple[int, int, int, int]]) -> None:
        self.boxes = boxes

    def init(self, frame, boxes, **_):
        return [0]

    def track(self, frame, **_):
        x, y, w, h = self.boxes[round(float(frame.mean()) / STEP)]
        mask = np.zeros(frame.shape[:2], bool)
        mask[y:y + h, x:x + w] = True
        return [SimpleNamespace(box=(x, y, w, h), mask=mask)]


STEP = 8
GT = (20, 10, 20, 20)  # the target: a 20x20 square that does not move
SHIFTED = (30, 10, 20, 20)  # IoU 200 / 600 = 1/3, centre 10 px away
INSIDE = (25, 15, 10, 10)  # IoU 100 / 400 = 1/4, boundaries 5 px apart (F = 0)
AWAY = (44, 28, 20, 20)  # no overlap, centre 30 px away


def grey_frames(folder: Path, n: int, ext: str) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:05d}.{ext}"), np.full((48, 64, 3), STEP * i, np.uint8))


def davis_tree(root: Path) -> Path:
    """A DAVIS layout with one 6-frame sequence ``sq``: the GT square in every annotation (0/255)."""
    grey_frames(root / "JPEGImages" / "480p" / "sq", 6, "jpg")
    ann = root / "Annotations" / "480p" / "sq"
    ann.mkdir(parents=True)
    for i in range(6):
        label = np.zeros((48, 64), np.uint8)
        label[10:30, 20:40] = 255
        cv2.imwrite(str(ann / f"{i:05d}.png"), label)
    return root


def boxes_tree(root: Path) -> Path:
    """A box benchmark with one 20-frame sequence ``sq``: the GT square on every line."""
    grey_frames(root / "sq", 20, "png")
    (root / "sq" / "groundtruth.txt").write_text("\n".join(["20,10,20,20"] * 20) + "\n")
    return root


def eval_with(monkeypatch, tracker: ScriptedTracker, *args) -> dict:
    monkeypatch.setattr(_common, "make_tracker", lambda *a, **k: tracker)
    result = CliRunner().invoke(cli_group, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads((Path(args[args.index("--out") + 1]) / "results.json").read_text())


def test_eval_davis_scores_the_scripted_masks(tmp_path, monkeypatch):
    """Frames 1..4 of 0..5 are scored: masks exact, exact, inside, inside (frame 5's miss is not scored)."""
    root = davis_tree(tmp_path / "DAVIS")
    tracker = ScriptedTracker({1: GT, 2: GT, 3: INSIDE, 4: INSIDE, 5: AWAY})
    results = eval_with(monkeypatch, tracker, "eval", "davis", root, "--out", tmp_path / "ev", "--quiet")
    obj = results["sequences"]["sq"]["objects"]["1"]
    assert obj["J_per_frame"] == [1.0, 1.0, 0.25, 0.25] and obj["F_per_frame"] == [1.0, 1.0, 0.0, 0.0]
    # decay: mean of the first quarter bin (frames 1, 2) minus the last (frames 3, 4), as the official code
    summary = results["summary"]
    assert summary.pop("success_curve") == [1.0] * 5 + [0.5] * 15 + [0.0]  # J > 0, 0.05, ..., 1
    # the boxes against the mask's bounding box (20, 10, 20, 20): the same overlaps as J here
    assert summary.pop("box_success_curve") == [1.0] * 5 + [0.5] * 15 + [0.0]
    assert summary == pytest.approx({"J_mean": 0.625, "J_recall": 0.5, "J_decay": 0.75, "F_mean": 0.5,
                                     "F_recall": 0.5, "F_decay": 1.0, "JF_mean": 0.5625, "box_auc": 12.5 / 21,
                                     "sequences": 1, "objects": 1, "scored_frames": 4})
    assert obj["box_overlaps"] == [1.0, 1.0, 0.25, 0.25]
    assert results["meta"]["tracked_frames"] == 5


def test_eval_boxes_one_pass_and_restart_score_the_scripted_boxes(tmp_path, monkeypatch):
    boxes_tree(tmp_path / "boxes")
    tracker = ScriptedTracker({**dict.fromkeys(range(20), SHIFTED), 3: AWAY})

    ope = eval_with(monkeypatch, tracker, "eval", "boxes", tmp_path / "boxes", "--max-frames", 5, "--out",
                    tmp_path / "ope", "--quiet")
    assert ope["sequences"]["sq"]["overlaps"] == pytest.approx([1.0, 1 / 3, 1 / 3, 0.0, 1 / 3])
    # success: 4 of 5 frames above thresholds 0..0.30, only frame 0 above 0.35..0.95, none above 1
    assert ope["summary"]["success_auc"] == pytest.approx((7 * 0.8 + 13 * 0.2) / 21)
    assert ope["summary"]["precision_20"] == pytest.approx(0.8)  # frame 3 is 30 px off

    vot = eval_with(monkeypatch, tracker, "eval", "boxes", tmp_path / "boxes", "--restart", "--out",
                    tmp_path / "vot", "--quiet")
    seq = vot["sequences"]["sq"]
    # fails on frame 3, re-initialised on frame 8; frames 9..17 are burn-in, 18 and 19 counted
    assert seq["per_frame"] == (["init", None, None, "fail"] + ["skip"] * 4 + ["init"] + [None] * 9
                                + [pytest.approx(1 / 3)] * 2)
    assert vot["summary"]["failures"] == 1 and vot["summary"]["robustness"] == 1.0
    assert vot["summary"]["accuracy"] == pytest.approx(1 / 3)


def test_eval_user_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(cli_group, ["eval", "davis", str(davis_tree(tmp_path / "DAVIS")), "--tracker",
                                            "opencv-mil", "--sequences", "nope", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and result.output.strip().count("\n") == 0 and "nope" in result.output
    missing = [n for n in baselines.FACTORIES if n not in baselines.available()]
    if missing:
        result = CliRunner().invoke(cli_group, ["eval", "boxes", str(boxes_tree(tmp_path / "boxes")), "--tracker",
                                                missing[0], "--out", str(tmp_path / "o")])
        assert result.exit_code == 1 and "opencv-contrib-python" in result.output
        assert result.output.strip().count("\n") == 0
    assert not (tmp_path / "o").exists()
