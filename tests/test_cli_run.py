"""`siamtrack run` / `export-masks` / `demo` plumbing, driven by the oracle tracker (exact answers, no network).

Outputs are compared with the generated clip's ground truth, so a frame written out of
order, a mask off by one frame or a dropped frame fails. Errors go through the real entry
point (`siamtrack.cli.main`): one line on stderr, a non-zero exit code, nothing written.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from siamtrack.cli import main
from siamtrack.commands import _common
from siamtrack.errors import SiamtrackError
from siamtrack.io import sources, synthetic
from siamtrack.io.sinks import read_jsonl
from siamtrack.io.sources import open_source
from siamtrack.presets import PRESETS
from tests.conftest import default_sigint
from tests.test_io_sources import audio_only_file, empty_video_file

N, SIZE = 12, (160, 120)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("clip")
    gt = synthetic.make_clip(root, n_frames=N, size=SIZE)
    truth = [f.mask for f in synthetic.frames(N, SIZE)]
    return {"dir": root, "video": str(root / "clip.mp4"), "gt": gt, "masks": truth}


@pytest.fixture
def oracle(monkeypatch):
    """Make the commands track with the oracle; call with the clip frame the run starts on."""
    def use(start: int = 0, stop_after: int | None = None) -> None:
        def make(*_args, **_kwargs):
            tracker = synthetic.OracleTracker(N, SIZE, start=start)
            if stop_after is not None:
                real = tracker.track
                calls = iter(range(10**6))

                def track(frame, **kw):
                    if next(calls) + 1 >= stop_after:
                        raise KeyboardInterrupt  # as Ctrl-C during the network call
                    return real(frame, **kw)

                tracker.track = track
            return tracker

        monkeypatch.setattr(_common, "make_tracker", make)

    use()
    return use


def invoke(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def box_arg(box) -> str:
    return ",".join(f"{v:g}" for v in box)


def read_png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_run_outputs_match_the_ground_truth(clip, oracle, capsys, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = invoke(capsys, "run", clip["video"], "--bbox", box_arg(clip["gt"]["init_box"]), "--out", out,
                               "--quiet")
    assert code == 0, err
    assert stdout.strip().splitlines()[-1] == str(out) and err == ""
    assert sorted(p.name for p in out.iterdir()) == ["annotated.mp4", "masks", "tracks.json"]
    doc = json.loads((out / "tracks.json").read_text())
    meta, records = doc["meta"], doc["objects"]["0"]
    assert meta["frames"] == N and meta["fps"] == 25.0 and meta["size"] == list(SIZE) and not meta["interrupted"]
    assert meta["source"] == clip["video"] and meta["model"] == "oracle" and "versions" in meta
    assert meta["objects"] == [{"obj_id": 0, "init_box": clip["gt"]["init_box"]}]
    assert [r["frame"] for r in records] == list(range(N))
    assert [r["time"] for r in records] == pytest.approx([i / 25 for i in range(N)])
    assert records[0]["polygon_source"] == "init" and records[0]["box"] == clip["gt"]["init_box"]
    for i in range(1, N):
        assert records[i]["box"] == clip["gt"]["boxes_xywh"][i]
        assert records[i]["mask_area"] == int(clip["masks"][i].sum())
        png = read_png(out / "masks" / "0" / f"{i:05d}.png")
        assert png.shape == (SIZE[1], SIZE[0]) and ((png == 255) == clip["masks"][i]).all()
        rot = records[i]["rotated"]
        assert len(rot["points"]) == 4 and {"cx", "cy", "w", "h", "angle"} <= set(rot)
    video = open_source(out / "annotated.mp4")
    assert video.size == SIZE and video.fps == 25.0
    frames = [f.image for f in video]
    assert len(frames) == N
    source = [f.image for f in open_source(clip["video"])]
    tinted = clip["masks"][5]
    assert np.abs(frames[5][tinted].astype(int) - source[5][tinted]).mean() > 20  # the overlay is there
    drawn = np.zeros(SIZE[::-1], np.uint8)
    cv2.fillPoly(drawn, [np.round(records[5]["rotated"]["points"]).astype(np.int32)], 1)
    far = ~cv2.dilate(drawn, np.ones((9, 9), np.uint8)).astype(bool)
    far[:int(min(p[1] for p in records[5]["rotated"]["points"]))] = False  # the label's rows
    assert np.abs(frames[5][far].astype(int) - source[5][far]).mean() < 4  # and only there


def test_several_objects_get_their_own_ids_and_outputs(clip, oracle, capsys, tmp_path):
    out = tmp_path / "two"
    code, _, err = invoke(capsys, "run", clip["video"], "--bbox", box_arg(clip["gt"]["init_box"]), "--bbox",
                          "5,5,20,10", "--out", out, "--quiet", "--no-video")
    assert code == 0, err
    doc = json.loads((out / "tracks.json").read_text())
    assert sorted(doc["objects"]) == ["0", "1"] and [o["obj_id"] for o in doc["meta"]["objects"]] == [0, 1]
    assert all(r["mask_area"] == 200 for r in doc["objects"]["1"])
    assert len(list((out / "masks" / "1").glob("*.png"))) == N and not (out / "annotated.mp4").exists()


def test_image_folder_in_natural_order_and_a_glob(clip, oracle, capsys, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for f in open_source(clip["video"]):
        cv2.imwrite(str(folder / f"img{f.index + 1}.png"), f.image)  # img1..img12: unpadded names
    for spec in (folder, folder / "img*.png"):
        out = tmp_path / f"out-{len(str(spec))}"
        code, _, err = invoke(capsys, "run", spec, "--bbox", box_arg(clip["gt"]["init_box"]), "--out", out,
                              "--quiet", "--no-video")
        assert code == 0, err
        for i in (2, 9, 11):  # a lexicographic order would put img10 third and break these
            assert ((read_png(out / "masks" / "0" / f"{i:05d}.png") == 255) == clip["masks"][i]).all()


def test_start_and_max_frames_select_a_range(clip, oracle, capsys, tmp_path):
    oracle(start=3)
    out = tmp_path / "range"
    code, _, err = invoke(capsys, "run", clip["video"], "--bbox", box_arg(clip["gt"]["boxes_xywh"][3]), "--start", 3,
                          "--max-frames", 4, "--out", out, "--quiet")
    assert code == 0, err
    doc = json.loads((out / "tracks.json").read_text())
    assert [r["frame"] for r in doc["objects"]["0"]] == [3, 4, 5, 6] and doc["meta"]["start"] == 3
    assert sorted(p.name for p in (out / "masks" / "0").iterdir()) == [f"{i:05d}.png" for i in (3, 4, 5, 6)]
    assert ((read_png(out / "masks" / "0" / "00005.png") == 255) == clip["masks"][5]).all()
    assert len(list(open_source(out / "annotated.mp4"))) == 4


def test_no_masks_and_partly_outside_box_is_clipped_with_a_warning(clip, oracle, capsys, tmp_path):
    out = tmp_path / "clipped"
    code, _, err = invoke(capsys, "run", clip["video"], "--bbox", "-10,-20,60,50", "--out", out, "--quiet",
                          "--no-masks")
    assert code == 0
    assert err.count("\n") == 1 and "clipped" in err
    doc = json.loads((out / "tracks.json").read_text())
    assert doc["meta"]["objects"][0]["init_box"] == [0.0, 0.0, 50.0, 30.0]
    assert not (out / "masks").exists() and (out / "annotated.mp4").exists()


def test_default_output_folders_are_numbered_never_reused(clip, oracle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = []
    for _ in range(3):
        code, stdout, err = invoke(capsys, "run", clip["video"], "--bbox", "10,10,30,30", "--max-frames", 2,
                                   "--quiet", "--no-video")
        assert code == 0, err
        paths.append(stdout.strip())
    assert paths == [str(Path("runs") / n) for n in ("clip", "clip2", "clip3")]


def test_overwrite_replaces_only_the_runs_own_outputs(clip, oracle, capsys, tmp_path):
    out = tmp_path / "again"
    (out / "masks" / "0").mkdir(parents=True)
    (out / "masks" / "0" / "00099.png").write_bytes(b"stale")
    (out / "notes.txt").write_text("mine")
    code, _, err = invoke(capsys, "run", clip["video"], "--bbox", "10,10,30,30", "--out", out, "--quiet")
    assert code == 1 and "--overwrite" in err
    code, _, err = invoke(capsys, "run", clip["video"], "--bbox", "10,10,30,30", "--out", out, "--quiet",
                          "--overwrite", "--max-frames", 3)
    assert code == 0, err
    assert not (out / "masks" / "0" / "00099.png").exists() and (out / "notes.txt").read_text() == "mine"
    assert len(list((out / "masks" / "0").iterdir())) == 3


def test_ctrl_c_leaves_valid_outputs_for_the_frames_done(clip, oracle, capsys, tmp_path):
    oracle(stop_after=6)  # frames 0..5 done, the 7th track() call is interrupted
    out = tmp_path / "stopped"
    code, stdout, err = invoke(capsys, "run", clip["video"], "--bbox", box_arg(clip["gt"]["init_box"]), "--out", out,
                               "--quiet")
    assert code == 130 and stdout.strip() == str(out) and "6 frames done" in err
    doc = json.loads((out / "tracks.json").read_text())
    assert doc["meta"]["interrupted"] is True and doc["meta"]["frames"] == 6
    assert len(list((out / "masks" / "0").iterdir())) == 6 and not (out / "tracks.jsonl").exists()
    assert len(list(open_source(out / "annotated.mp4"))) == 6


SLOW_RUN = """
import sys, time
from siamtrack.commands import _common
from siamtrack.io.synthetic import OracleTracker
class Slow(OracleTracker):
    def track(self, frame, **kw):
        time.sleep(0.1)
        return super().track(frame, **kw)
_common.make_tracker = lambda *a, **k: Slow({n}, {size})
from siamtrack.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_signals_leave_playable_video_and_readable_tracks(tmp_path, sig):
    n, size = 200, (160, 120)
    gt = synthetic.make_clip(tmp_path / "long", n_frames=n, size=size, masks=False)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN.format(n=n, size=size), "run",
                             str(tmp_path / "long" / "clip.mp4"), "--bbox", box_arg(gt["init_box"]), "--out", str(out),
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "tracks.jsonl").exists():
        time.sleep(0.1)
    while time.time() < deadline and len((out / "tracks.jsonl").read_text().splitlines()) < 12:
        time.sleep(0.1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig != signal.SIGKILL:
        assert proc.returncode == 128 + sig and "Traceback" not in err
        doc = json.loads((out / "tracks.json").read_text())
        done = doc["meta"]["frames"]
        assert doc["meta"]["interrupted"] is True and 10 <= done < n
        assert len(list((out / "masks" / "0").iterdir())) == done
        assert len(list(open_source(out / "annotated.mp4"))) == done
    else:
        meta, rows = read_jsonl(out / "tracks.jsonl")  # never finalised, but every line is whole
        assert meta["source"].endswith("clip.mp4") and len(rows) >= 11
        assert [r["frame"] for r in rows] == list(range(len(rows)))
        decoded = len(list(open_source(out / "annotated.mp4")))  # FFmpeg saw EOF and closed the file
        assert 1 <= decoded <= len(rows)


def test_export_masks_formats(clip, oracle, capsys, tmp_path):
    box = box_arg(clip["gt"]["init_box"])
    for fmt in ("png", "davis", "npz"):
        out = tmp_path / fmt
        code, _, err = invoke(capsys, "export-masks", clip["video"], "--bbox", box, "--bbox", "5,5,20,10", "--out",
                              out, "--format", fmt, "--quiet", "--max-frames", 6)
        assert code == 0, err
        assert not list(out.rglob("*.mp4")) and not (out / "tracks.json").exists()
    assert ((read_png(tmp_path / "png" / "0" / "00004.png") == 255) == clip["masks"][4]).all()
    label = np.array(Image.open(tmp_path / "davis" / "00004.png"))
    expected = np.where(clip["masks"][4], 1, 0)
    expected[5:15, 5:25] = 2
    assert (label == expected).all() and len(list((tmp_path / "davis").iterdir())) == 6
    with np.load(tmp_path / "npz" / "00004.npz") as d:
        assert d["ids"].tolist() == [0, 1] and (d["masks"][0] == clip["masks"][4]).all()


def test_demo_generates_its_clip_once_and_tracks_it(oracle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_common, "make_tracker", lambda *a, **k: synthetic.OracleTracker(90, (640, 360)))
    code, stdout, err = invoke(capsys, "demo", "--clip-dir", "clipdir", "--quiet")
    assert code == 0, err
    gt = json.loads((tmp_path / "clipdir" / "groundtruth.json").read_text())
    doc = json.loads((tmp_path / "runs" / "demo" / "tracks.json").read_text())
    assert doc["meta"]["frames"] == gt["frames"] == 90
    assert [r["box"] for r in doc["objects"]["0"][1:]] == gt["boxes_xywh"][1:]
    assert "runs/demo/annotated.mp4" in stdout
    stamp = (tmp_path / "clipdir" / "clip.mp4").stat().st_mtime_ns
    code, stdout, _ = invoke(capsys, "demo", "--clip-dir", "clipdir", "--quiet", "--no-video")
    assert code == 2  # demo has no --no-video: a usage error, nothing regenerated
    code, stdout, _ = invoke(capsys, "demo", "--clip-dir", "clipdir", "--quiet")
    assert code == 0 and "runs/demo2" in stdout and (tmp_path / "clipdir" / "clip.mp4").stat().st_mtime_ns == stamp


def _text_file(p: Path) -> Path:
    p.write_text("not a video")
    return p


def _mixed(p: Path) -> Path:
    p.mkdir()
    cv2.imwrite(str(p / "1.png"), np.zeros((30, 40, 3), np.uint8))
    cv2.imwrite(str(p / "2.png"), np.zeros((40, 30, 3), np.uint8))
    return p


BAD_INPUTS = [
    ("missing source", lambda t, v: ["run", t / "missing.mp4", "--bbox", "1,1,5,5"], "no such file"),
    ("text file", lambda t, v: ["run", _text_file(t / "notes.mp4"), "--bbox", "1,1,5,5"], "not a readable video"),
    ("empty folder", lambda t, v: ["run", (t / "e").mkdir() or t / "e", "--bbox", "1,1,5,5"], "no images"),
    ("glob", lambda t, v: ["run", t / "*.jpg", "--bbox", "1,1,5,5"], "matches no images"),
    ("audio only", lambda t, v: ["run", audio_only_file(t / "a.m4a"), "--bbox", "1,1,5,5"], "no video stream"),
    ("empty video", lambda t, v: ["run", empty_video_file(t / "e.mp4"), "--bbox", "1,1,5,5"], "has no frames"),
    ("three numbers", lambda t, v: ["run", v, "--bbox", "1,2,3"], "expected x,y,w,h"),
    ("letters", lambda t, v: ["run", v, "--bbox", "a,b,c,d"], "four numbers"),
    ("nan", lambda t, v: ["run", v, "--bbox", "nan,1,5,5"], "finite"),
    ("zero width", lambda t, v: ["run", v, "--bbox", "10,10,0,5"], "zero or negative"),
    ("outside", lambda t, v: ["run", v, "--bbox", "1000,1000,20,20"], "outside the 160x120 frame"),
    ("start past end", lambda t, v: ["run", v, "--bbox", "1,1,5,5", "--start", 500], "no frames"),
    ("out is a file", lambda t, v: ["run", v, "--bbox", "1,1,5,5", "--out", _text_file(t / "f")], "is a file"),
    ("out under a file", lambda t, v: ["run", v, "--bbox", "1,1,5,5", "--out", _text_file(t / "g") / "sub"],
     "cannot write"),
    ("no display", lambda t, v: ["run", v], "--bbox"),
    ("show without display", lambda t, v: ["run", v, "--bbox", "1,1,5,5", "--show"], "display"),
    ("negative start", lambda t, v: ["run", v, "--bbox", "1,1,5,5", "--start", -1], "--start"),
    ("bad preset", lambda t, v: ["run", v, "--bbox", "1,1,5,5", "--preset", "fast"], "--preset"),
    ("export without box", lambda t, v: ["export-masks", v, "--out", t / "o"], "--bbox"),
    ("export bad format", lambda t, v: ["export-masks", v, "--bbox", "1,1,5,5", "--out", t / "o", "--format", "gif"],
     "--format"),
    ("webcam no display", lambda t, v: ["webcam"], "display"),
]


@pytest.mark.parametrize(("case", "args", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_user_mistakes_are_one_line_errors_and_write_nothing(clip, oracle, capsys, tmp_path, monkeypatch, case,
                                                            args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, stdout, err = invoke(capsys, *args(tmp_path, clip["video"]))
    assert code != 0 and stdout == ""
    assert err.startswith("Error:") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "o").exists()


def test_image_of_another_size_mid_run_is_one_line_and_keeps_the_frames_done(oracle, capsys, tmp_path):
    code, _, err = invoke(capsys, "run", _mixed(tmp_path / "m"), "--bbox", "1,1,5,5", "--out", tmp_path / "o",
                          "--quiet")
    assert code == 1 and err.count("\n") == 1 and "differs from the first image" in err
    assert json.loads((tmp_path / "o" / "tracks.json").read_text())["meta"]["frames"] == 1


def test_model_errors_are_one_line(clip, capsys, tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(os.urandom(2000))
    for args, message in ((["--model", "no-such-model"], "unknown model"), (["--checkpoint", bad], "bad.pth"),
                          (["--model", "siammask-davis", "--checkpoint", bad], "not both")):
        code, _, err = invoke(capsys, "run", clip["video"], "--bbox", "1,1,5,5", "--out", tmp_path / "o", *args)
        assert code != 0 and err.count("\n") == 1 and message in err, err
        assert not (tmp_path / "o").exists()


def test_webcam_without_a_camera_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("DISPLAY", ":97")
    code, _, err = invoke(capsys, "webcam", "--camera", 97)
    assert code == 1 and err.count("\n") == 1 and "camera 97 cannot be opened" in err


def test_choices_are_the_trackers_and_the_engines():
    from siamtrack.backends.engine import PRECISIONS
    from siamtrack.commands.bench import bench
    from siamtrack.commands.run import run

    for command in (run, bench):
        choices = {p.name: list(p.type.choices) for p in command.params if hasattr(p.type, "choices")}
        assert choices["preset"] == list(PRESETS) == ["davis", "vot", "vot18", "pysot", "lite-untuned",
                                                      "nanotrack-v3", "siammask-nano", "nanotrack-v2",
                                                      "nanotrack-opencv"]
        assert choices["device"] == ["auto", "cpu", "cuda"]
    choices = {p.name: list(p.type.choices) for p in run.params if hasattr(p.type, "choices")}
    assert choices["precision"] == list(PRECISIONS)


def test_progress_and_summary_go_to_stderr(clip, oracle, capsys, tmp_path):
    out = tmp_path / "loud"
    code, stdout, err = invoke(capsys, "run", clip["video"], "--bbox", "10,10,30,30", "--out", out)
    assert code == 0 and stdout.strip() == str(out)
    for word in ("tracking", f"{N}/{N}", "frames", "fps", "precision", "annotated.mp4", "mask PNGs"):
        assert word in err, word
    meta = json.loads((out / "tracks.json").read_text())["meta"]
    assert meta["tracking_fps"] > 0 and meta["interrupted"] is False


def test_weights_command_errors_are_one_line(capsys, tmp_path):
    for args, message in ((["weights", "path", "no-such-model"], "unknown model"),
                          (["weights", "download", "no-such-model"], "unknown model"),
                          (["weights", "verify", tmp_path / "missing.pth"], "does not exist")):
        code, _, err = invoke(capsys, *args)
        assert code != 0 and err.count("\n") == 1 and message in err, err
    code, out, _ = invoke(capsys, "weights", "path", "siammask-davis")
    assert code == 0 and out.strip().endswith("SiamMask_DAVIS.pth")


def test_command_modules_import_nothing_heavy():
    """`siamtrack --help` stays instant: torch, OpenCV, numpy load only when a command runs."""
    code = ("import sys, siamtrack.cli\n"
            "for m in ('run', 'webcam', 'export_masks', 'weights', 'demo', 'batch', 'export', 'bench', 'eval'):\n"
            "    __import__('siamtrack.commands.' + m)\n"
            "print(sorted(k for k in ('torch', 'cv2', 'numpy', 'imageio_ffmpeg', 'rich', 'PIL') if k in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr


def _decoders() -> tuple[list[str], list[int]]:
    """Decode threads alive in this process and FFmpeg processes it started."""
    threads = [t.name for t in threading.enumerate() if t.name == "siamtrack-decode"]
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)
            name = fields[0].split("(", 1)[1]
            if name.startswith("ffmpeg") and int(fields[1].split()[1]) == os.getpid():
                children.append(int(stat.parent.name))
    return threads, children


def _no_decoders_within(seconds: float) -> tuple[list[str], list[int]]:
    deadline = time.time() + seconds
    while time.time() < deadline and _decoders() != ([], []):
        time.sleep(0.05)
    return _decoders()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to see child processes")
@pytest.mark.parametrize("case", ["no display to select", "model fails to load", "export: model fails to load"])
def test_a_run_failing_after_the_source_opened_stops_its_decoder(clip, capsys, tmp_path, monkeypatch, case):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)

    def no_model(*_a, **_k):
        raise SiamtrackError("no such model")

    monkeypatch.setattr(_common, "make_tracker", no_model)
    assert _no_decoders_within(5) == ([], [])
    kept = []  # as a caller (a batch of videos, a notebook) would keep the source and its frames
    real = sources.VideoFile.frames

    def frames(self, *a, **k):
        kept.append(real(self, *a, **k))
        return kept[-1]

    monkeypatch.setattr(sources.VideoFile, "frames", frames)
    box = [] if case == "no display to select" else ["--bbox", "10,10,30,30"]
    command = "export-masks" if case.startswith("export") else "run"
    code, _, err = invoke(capsys, command, clip["video"], *box, "--out", tmp_path / "o", "--quiet")
    assert code == 1 and ("--bbox" in err or "no such model" in err), err
    assert kept and _no_decoders_within(5) == ([], [])


SECOND_SIGTERM = """
import os, signal, sys
from siamtrack.commands import _common
from siamtrack.io import sinks
from siamtrack.io.synthetic import OracleTracker
real_iter = sinks.iter_jsonl
passes = []
def iter_jsonl(path):
    passes.append(path)
    if len(passes) == 2:  # tracks.json is being written: its header is out, object 0 is next
        os.kill(os.getpid(), signal.SIGTERM)
    return real_iter(path)
sinks.iter_jsonl = iter_jsonl
class StopsAt4(OracleTracker):
    calls = 0
    def track(self, frame, **kw):
        StopsAt4.calls += 1
        if StopsAt4.calls == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().track(frame, **kw)
_common.make_tracker = lambda *a, **k: StopsAt4({n}, {size})
from siamtrack.cli import main
main(sys.argv[1:])
"""


def test_a_second_sigterm_while_finalising_does_not_cut_tracks_json_short(clip, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", SECOND_SIGTERM.format(n=N, size=SIZE), "run", clip["video"],
                           "--bbox", box_arg(clip["gt"]["init_box"]), "--out", str(out), "--quiet", "--no-video"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["masks", "tracks.json"]
    doc = json.loads((out / "tracks.json").read_text())
    assert doc["meta"]["interrupted"] is True and doc["meta"]["frames"] == 4
    assert [r["frame"] for r in doc["objects"]["0"]] == [0, 1, 2, 3]


@pytest.fixture
def headless(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


def test_webcam_without_a_display_tracks_headless_into_runs_outputs(clip, oracle, headless, capsys, tmp_path):
    """The clip stands in for a camera: OpenCV opens a video file as it opens a device or URL."""
    out = tmp_path / "cam"
    code, stdout, err = invoke(capsys, "webcam", "--camera", clip["video"], "--bbox", box_arg(clip["gt"]["init_box"]),
                               "--max-frames", 8, "--masks", "--out", out, "--quiet")
    assert code == 0, err
    assert stdout.strip() == str(out) and err == ""
    assert sorted(p.name for p in out.iterdir()) == ["annotated.mp4", "masks", "tracks.json"]
    doc = json.loads((out / "tracks.json").read_text())
    assert doc["meta"]["frames"] == 8 and doc["meta"]["interrupted"] is False and doc["meta"]["source"].startswith(
        "camera ")
    records = doc["objects"]["0"]
    assert [r["frame"] for r in records] == list(range(8)) and records[0]["polygon_source"] == "init"
    assert [r["box"] for r in records[1:]] == clip["gt"]["boxes_xywh"][1:8]
    assert ((read_png(out / "masks" / "0" / "00005.png") == 255) == clip["masks"][5]).all()
    video = open_source(out / "annotated.mp4")
    assert video.size == SIZE and len(list(video)) == 8


def test_webcam_headless_stops_cleanly_on_ctrl_c(clip, oracle, headless, capsys, tmp_path, monkeypatch):
    oracle(stop_after=5)
    monkeypatch.chdir(tmp_path)
    code, stdout, err = invoke(capsys, "webcam", "--camera", clip["video"], "--bbox", "10,10,30,30", "--quiet",
                               "--no-video")
    assert code == 130 and stdout.strip() == str(Path("runs") / "clip") and "5 frames done" in err
    doc = json.loads((tmp_path / "runs" / "clip" / "tracks.json").read_text())
    assert doc["meta"]["interrupted"] is True and doc["meta"]["frames"] == 5
    assert sorted(p.name for p in (tmp_path / "runs" / "clip").iterdir()) == ["tracks.json"]


WEBCAM_MISTAKES = [
    (["webcam"], "--bbox"),
    (["webcam", "--no-window", "--bbox", "1,1,5,5", "--record", "x.mp4"], "--record needs a window"),
]


@pytest.mark.parametrize(("args", "message"), WEBCAM_MISTAKES, ids=["no box", "record"])
def test_webcam_headless_mistakes_are_one_line(headless, capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, stdout, err = invoke(capsys, *args)
    assert code == 2 and stdout == "" and err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_webcam_window_rejects_headless_options(capsys, monkeypatch):
    monkeypatch.setenv("DISPLAY", ":97")
    code, _, err = invoke(capsys, "webcam", "--camera", 97, "--masks", "--out", "o")
    assert code == 2 and "--out, --masks apply without a window" in err and err.count("\n") == 1


def test_a_rotated_phone_video_is_tracked_upright_and_says_so_once(clip, capsys, tmp_path):
    """A display-rotation tag (as phones write): FFmpeg decodes upright frames; siamtrack says so in
    one line of its own (not imageio-ffmpeg's size note) and records the rotation in tracks.json."""
    import imageio_ffmpeg

    rotated = tmp_path / "phone.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-display_rotation", "90",
                    "-i", clip["video"], "-c", "copy", str(rotated)], check=True)
    src = open_source(rotated)
    assert (src.rotation, src.size) == (90, (SIZE[1], SIZE[0]))
    assert open_source(clip["video"]).rotation == 0 and open_source(clip["video"]).notice() is None
    code, out, err = invoke(capsys, "run", rotated, "--bbox", "30,40,40,30", "--out", tmp_path / "out",
                            "--max-frames", "3", "--no-video", "--quiet", "--device", "cpu")
    assert code == 0, err
    notes = [line for line in err.splitlines() if "rotat" in line]
    assert len(notes) == 1 and "90 degrees" in notes[0] and f"({SIZE[1]}x{SIZE[0]})" in notes[0], err
    assert "different from the source frame size" not in err
    meta = json.loads((Path(out.strip()) / "tracks.json").read_text())["meta"]
    assert meta["rotation"] == 90 and meta["size"] == [SIZE[1], SIZE[0]]
    mask = np.array(Image.open(next((Path(out.strip()) / "masks").rglob("*.png"))))
    assert mask.shape == (SIZE[0], SIZE[1])
