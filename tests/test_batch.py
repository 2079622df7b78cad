"""``siamtrack batch`` and ``eval --workers``: the manifest, entries written exactly as ``run``
writes them, the summary, reruns, Ctrl-C, worker processes and Ray.

Most tests track with the oracle (the generated clip's exact ground truth, no network) in this
process (``--workers 1``). Worker processes build their tracker themselves, so tests that spawn
them track with the shipped siammask-lite or with ``tests/batch_helpers.py``'s picklable oracle.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from siamtrack.batch import read_manifest
from siamtrack.commands import _common
from siamtrack.eval.davis import region_j
from siamtrack.executors import ProcessExecutor, default_threads
from siamtrack.io import synthetic
from siamtrack.io.sources import open_source
from tests import batch_helpers
from tests.test_cli_run import invoke

REPO = Path(__file__).resolve().parents[1]
N, SIZE = 12, (160, 120)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("clips")
    gt = synthetic.make_clip(root, n_frames=N, size=SIZE, masks=False)
    folder = root / "frames"
    folder.mkdir()
    for i, frame in enumerate(synthetic.frames(N, SIZE)):
        cv2.imwrite(str(folder / f"{i:05d}.png"), frame.image)
    (root / "corrupt.mp4").write_bytes(b"\x00 not a video " * 64)
    return {"root": root, "video": root / "clip.mp4", "folder": folder, "box": gt["init_box"]}


class Oracle(synthetic.OracleTracker):
    """The oracle of the clip, counting its initialisations; ``stop_at``: the track call (over
    all entries, the batch reuses one tracker) that raises KeyboardInterrupt, as Ctrl-C would."""

    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__(N, SIZE)
        self.inits = self.calls = 0
        self.stop_at = stop_at

    def init(self, frame, boxes, **kw):
        self.inits += 1
        return super().init(frame, boxes, **kw)

    def track(self, frame, **kw):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return super().track(frame, **kw)


@pytest.fixture
def oracle(monkeypatch) -> dict:
    """The commands track with ``Oracle``; set ``stop_at`` before a command, read ``made`` after."""
    state: dict = {"stop_at": None, "made": []}

    def make(*_args, **_kwargs):
        state["made"].append(Oracle(state["stop_at"]))
        return state["made"][-1]

    monkeypatch.setattr(_common, "make_tracker", make)
    return state


def write_manifest(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def summary(out: Path) -> dict:
    return json.loads((out / "batch.json").read_text())


def statuses(out: Path) -> dict[str, str]:
    return {e["name"]: e["status"] for e in summary(out)["entries"]}


def tracks(folder: Path) -> dict:
    return json.loads((folder / "tracks.json").read_text())


def entry(clip: dict, source, **extra) -> dict:
    return {"source": str(source), "bbox": [clip["box"]], **extra}


# The manifest ---------------------------------------------------------------------------------


def test_manifest_sources_are_relative_to_it_and_every_entry_gets_its_own_folder(tmp_path):
    (tmp_path / "seq").mkdir()
    rows = [{"source": "clips/a.mp4", "bbox": [1, 2, 3, 4]},
            {"source": "seq", "bbox": [[1, 2, 3, 4], [5, 6, 7, 8.5]], "start": 2, "max_frames": 5},
            "",
            {"source": "other/a.mp4", "bbox": [[1, 2, 3, 4]]},
            {"source": "seq/*.jpg", "bbox": [[1, 2, 3, 4]]},
            {"source": "/data/b.mp4", "bbox": [[1, 2, 3, 4]], "name": "a-2"}]
    entries = read_manifest(write_manifest(tmp_path / "m.jsonl", rows))
    base = tmp_path.resolve()
    assert [e.name for e in entries] == ["a", "seq", "a-3", "seq-2", "a-2"]  # explicit names first, then in order
    assert [e.line for e in entries] == [1, 2, 4, 5, 6]
    assert [e.path for e in entries] == [str(base / "clips/a.mp4"), str(base / "seq"), str(base / "other/a.mp4"),
                                         str(base / "seq/*.jpg"), "/data/b.mp4"]
    assert entries[0].boxes == ((1.0, 2.0, 3.0, 4.0),) and entries[0].start == 0 and entries[0].max_frames is None
    assert entries[1].boxes == ((1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.5))
    assert (entries[1].start, entries[1].max_frames) == (2, 5)


GOOD = '{"source": "x.mp4", "bbox": [1, 2, 3, 4], "name": "x"}'
BAD_LINES = [
    ("not JSON", '{"source": "a.mp4", "bbox": [[1, 2, 3, 4]]', "not valid JSON"),
    ("not an object", "[1, 2]", "expected a JSON object"),
    ("unknown key", '{"source": "a.mp4", "bbox": [1, 2, 3, 4], "frames": 3}', "unknown key 'frames'"),
    ("no source", '{"bbox": [1, 2, 3, 4]}', "'source'"),
    ("no box", '{"source": "a.mp4"}', "'bbox'"),
    ("three numbers", '{"source": "a.mp4", "bbox": [[1, 2, 3]]}', "'bbox'"),
    ("zero width", '{"source": "a.mp4", "bbox": [[1, 2, 0, 4]]}', "'bbox'"),
    ("negative start", '{"source": "a.mp4", "bbox": [1, 2, 3, 4], "start": -1}', "'start'"),
    ("zero max_frames", '{"source": "a.mp4", "bbox": [1, 2, 3, 4], "max_frames": 0}', "'max_frames'"),
    ("a path as name", '{"source": "a.mp4", "bbox": [1, 2, 3, 4], "name": "a/b"}', "'name'"),
    ("a name twice", '{"source": "b.mp4", "bbox": [1, 2, 3, 4], "name": "x"}', "'x' is already used on line 1"),
]


@pytest.mark.parametrize(("case", "line", "message"), BAD_LINES, ids=[c[0] for c in BAD_LINES])
def test_a_malformed_line_is_one_line_error_naming_it_before_any_work(oracle, capsys, tmp_path, case, line, message):
    manifest = write_manifest(tmp_path / "m.jsonl", [GOOD, "", line])
    code, stdout, err = invoke(capsys, "batch", manifest, "--out", tmp_path / "out")
    assert code == 1 and stdout == ""
    assert err.startswith("Error: m.jsonl line 3: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists() and oracle["made"] == []  # no model loaded, nothing written


# Entries ------------------------------------------------------------------------------------------


def test_good_entries_write_what_run_writes_and_bad_ones_fail_alone(clip, oracle, capsys, tmp_path):
    manifest = write_manifest(tmp_path / "m.jsonl", [
        entry(clip, clip["video"]),
        entry(clip, tmp_path / "missing.mp4"),
        entry(clip, clip["folder"], name="folder", max_frames=8),
        entry(clip, clip["root"] / "corrupt.mp4"),
        entry(clip, clip["folder"] / "*.png", name="glob"),
    ])
    out = tmp_path / "out"
    code, stdout, err = invoke(capsys, "batch", manifest, "--out", out, "--quiet")
    assert code == 1 and stdout.strip() == str(out / "batch.json") and "Traceback" not in err
    assert "Error: 2 of 5 entries failed" in err
    doc = summary(out)
    assert doc["counts"] == {"done": 3, "skipped": 0, "failed": 2, "interrupted": 0, "pending": 0}
    assert doc["interrupted"] is False and doc["frames"] == 12 + 8 + 12
    rows = {e["name"]: e for e in doc["entries"]}
    assert list(rows) == ["clip", "missing", "folder", "corrupt", "glob"]
    assert [rows[n]["frames"] for n in rows] == [12, 0, 8, 0, 12]
    assert rows["missing"]["error"] == f"{tmp_path / 'missing.mp4'}: no such file or folder"
    assert "not a readable video" in rows["corrupt"]["error"] and "\n" not in rows["corrupt"]["error"]
    assert "error" not in rows["clip"] and rows["clip"]["seconds"] > 0 and rows["folder"]["spec"]["max_frames"] == 8
    assert sorted(p.name for p in out.iterdir()) == ["batch.json", "clip", "folder", "glob"]

    code, _, err = invoke(capsys, "run", clip["video"], "--bbox", ",".join(map(str, clip["box"])), "--out",
                          tmp_path / "run", "--quiet")
    assert code == 0, err
    ran, batched = tracks(tmp_path / "run"), tracks(out / "clip")
    assert batched["objects"] == ran["objects"]
    assert {**batched["meta"], "tracking_fps": 0} == {**ran["meta"], "tracking_fps": 0}
    assert sorted(p.name for p in (out / "clip").iterdir()) == ["annotated.mp4", "masks", "tracks.json"]
    for png in sorted((tmp_path / "run" / "masks" / "0").iterdir()):
        assert (out / "clip" / "masks" / "0" / png.name).read_bytes() == png.read_bytes()
    assert len(list(open_source(out / "clip" / "annotated.mp4"))) == N
    assert len(list((out / "folder" / "masks" / "0").iterdir())) == 8
    assert tracks(out / "glob")["objects"] == ran["objects"]  # the same frames, from PNGs


def test_a_rerun_skips_complete_entries_and_redoes_changed_or_failed_ones(clip, oracle, capsys, tmp_path):
    rows = [entry(clip, clip["video"]), entry(clip, clip["folder"], name="folder"),
            entry(clip, tmp_path / "later.mp4", name="later")]
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    out = tmp_path / "out"
    assert invoke(capsys, "batch", manifest, "--out", out, "--quiet")[0] == 1
    assert statuses(out) == {"clip": "done", "folder": "done", "later": "failed"}
    stamp = (out / "clip" / "tracks.json").stat().st_mtime_ns

    (tmp_path / "later.mp4").symlink_to(clip["video"])  # the missing source appears
    code, _, err = invoke(capsys, "batch", manifest, "--out", out, "--quiet")
    assert code == 0, err
    assert statuses(out) == {"clip": "skipped", "folder": "skipped", "later": "done"}
    assert oracle["made"][-1].inits == 1 and (out / "clip" / "tracks.json").stat().st_mtime_ns == stamp
    doc = summary(out)
    assert doc["counts"]["skipped"] == 2 and doc["frames"] == N  # only what this run tracked
    assert [e["frames"] for e in doc["entries"]] == [N, N, N]

    rows[1]["bbox"] = [[20, 30, 40, 50]]  # an edited entry is tracked again
    write_manifest(manifest, rows)
    assert invoke(capsys, "batch", manifest, "--out", out, "--quiet")[0] == 0
    assert statuses(out) == {"clip": "skipped", "folder": "done", "later": "skipped"}
    assert tracks(out / "folder")["meta"]["objects"][0]["init_box"] == [20.0, 30.0, 40.0, 50.0]

    assert invoke(capsys, "batch", manifest, "--out", out, "--quiet", "--no-video")[0] == 0  # other options
    assert set(statuses(out).values()) == {"done"} and not (out / "clip" / "annotated.mp4").exists()


def test_ctrl_c_in_this_process_finalises_the_entry_and_a_rerun_finishes_the_batch(clip, oracle, capsys, tmp_path):
    manifest = write_manifest(tmp_path / "m.jsonl", [entry(clip, clip["video"], name=n) for n in "abc"])
    out = tmp_path / "out"
    oracle["stop_at"] = (N - 1) + 7  # entry a is tracked whole; the 7th track call of b is interrupted
    code, stdout, err = invoke(capsys, "batch", manifest, "--out", out, "--quiet")
    assert code == 130 and stdout.strip() == str(out / "batch.json") and "Traceback" not in err
    assert "Interrupted:" in err
    doc = summary(out)
    assert doc["interrupted"] is True and statuses(out) == {"a": "done", "b": "interrupted", "c": "pending"}
    assert [e["frames"] for e in doc["entries"]] == [N, 7, 0]
    stopped = tracks(out / "b")
    assert stopped["meta"]["interrupted"] is True and stopped["meta"]["frames"] == 7
    assert len(list((out / "b" / "masks" / "0").iterdir())) == 7 and not (out / "c").exists()

    oracle["stop_at"] = None
    code, _, err = invoke(capsys, "batch", manifest, "--out", out, "--quiet")
    assert code == 0, err
    assert statuses(out) == {"a": "skipped", "b": "done", "c": "done"}
    assert tracks(out / "b")["meta"]["frames"] == N and tracks(out / "b")["meta"]["interrupted"] is False


SIGNALLED = """
import sys
from siamtrack.commands import _common
from tests import batch_helpers
_common.make_tracker = batch_helpers.slow_oracle  # picklable: worker processes build it too
from siamtrack.cli import main
main(sys.argv[1:])
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_batch_finalises_running_entries_in_the_workers(tmp_path, sig):
    n = batch_helpers.LONG_N
    gt = synthetic.make_clip(tmp_path / "long", n_frames=n, size=batch_helpers.SIZE, masks=False)
    manifest = write_manifest(tmp_path / "m.jsonl", [{"source": "long/clip.mp4", "bbox": [gt["init_box"]],
                                                      "name": f"e{i}"} for i in range(4)])
    out = tmp_path / "out"
    command = [sys.executable, "-c", SIGNALLED, "batch", str(manifest), "--out", str(out), "--workers", "2",
               "--quiet", "--no-video"]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    jsonl, deadline = out / "e0" / "tracks.jsonl", time.time() + 120
    while time.time() < deadline and not (jsonl.exists() and len(jsonl.read_text().splitlines()) > 10):
        time.sleep(0.1)
    proc.send_signal(sig)  # to the parent alone: it tells the workers
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig and "Traceback" not in err, err
    doc = summary(out)
    rows = {e["name"]: e for e in doc["entries"]}
    assert doc["interrupted"] is True and rows["e0"]["status"] == "interrupted" and rows["e0"]["frames"] >= 10
    assert {r["status"] for r in rows.values()} <= {"interrupted", "pending"} and doc["counts"]["pending"] >= 2
    for name, row in rows.items():
        if row["status"] == "pending":
            assert not (out / name).exists()
            continue
        meta = tracks(out / name)["meta"]
        assert meta["interrupted"] is True and meta["frames"] == row["frames"] < n
        assert len(list((out / name / "masks" / "0").iterdir())) == row["frames"]
    if sig == signal.SIGINT:
        again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        assert set(statuses(out).values()) == {"done"}
        assert [tracks(out / f"e{i}")["meta"]["frames"] for i in range(4)] == [n] * 4


# Executors ------------------------------------------------------------------------------------


def test_threads_per_worker_keep_workers_times_threads_within_the_cores():
    assert [default_threads(w, cores=2) for w in (1, 2, 3)] == [2, 1, 1]
    assert [default_threads(w, cores=8) for w in (1, 3, 4, 16)] == [8, 2, 2, 1]


@pytest.mark.slow
def test_a_worker_process_that_dies_fails_its_items_not_the_caller():
    with ProcessExecutor(batch_helpers.no_tracker, workers=2, threads=1) as executor:
        got = dict(executor.map(batch_helpers.times_ten_or_crash, [1, 2, 3],
                                on_lost=lambda item, message: ("lost", item, message)))
    assert sorted(got) == [0, 1, 2] and got[0] == 10  # by index
    assert got[1][:2] == ("lost", 2) and "a worker process died" in got[1][2]


@pytest.mark.parametrize(("args", "message"), [
    (["--ray-address", "auto"], "--ray-address needs --executor ray"),
    (["--gpus-per-worker", "1"], "--gpus-per-worker needs --executor ray"),
])
def test_ray_options_need_the_ray_executor(clip, oracle, capsys, tmp_path, args, message):
    manifest = write_manifest(tmp_path / "m.jsonl", [entry(clip, clip["video"])])
    code, _, err = invoke(capsys, "batch", manifest, "--out", tmp_path / "out", *args)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_without_ray_the_ray_executor_is_one_line(clip, capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    manifest = write_manifest(tmp_path / "m.jsonl", [entry(clip, clip["video"])])
    code, _, err = invoke(capsys, "batch", manifest, "--out", tmp_path / "out", "--executor", "ray")
    assert code == 1 and err == "Error: the Ray executor needs Ray: pip install 'siamtrack[ray]'\n"


def mask_iou(a: Path, b: Path) -> list[float]:
    """Per-frame IoU of two runs' object-0 mask PNGs."""
    return [region_j(cv2.imread(str(png), cv2.IMREAD_GRAYSCALE) > 0,
                     cv2.imread(str(b / "masks" / "0" / png.name), cv2.IMREAD_GRAYSCALE) > 0)
            for png in sorted((a / "masks" / "0").iterdir())]


@pytest.mark.slow
def test_local_workers_and_ray_give_the_tracks_of_one_process(clip, capsys, tmp_path):
    """The shipped model, one thread per worker: the same tracks in this process, in two worker
    processes and in two Ray actors (a local Ray instance that the command starts and stops)."""
    pytest.importorskip("ray")
    manifest = write_manifest(tmp_path / "m.jsonl", [entry(clip, clip["video"]), entry(clip, clip["folder"]),
                                                     entry(clip, tmp_path / "missing.mp4")])
    outs = {}
    runs = {"inline": [], "local": ["--workers", "2"], "ray": ["--executor", "ray", "--workers", "2"]}
    for label, args in runs.items():
        outs[label] = tmp_path / label
        code, _, err = invoke(capsys, "batch", manifest, "--out", outs[label], "--quiet", "--threads", "1", *args)
        assert code == 1 and "Traceback" not in err, err  # the missing entry fails in every executor
        assert statuses(outs[label]) == {"clip": "done", "frames": "done", "missing": "failed"}
        assert summary(outs[label])["executor"]["threads"] == 1
    for label in ("local", "ray"):
        for name in ("clip", "frames"):
            ious = mask_iou(outs["inline"] / name, outs[label] / name)
            assert len(ious) == N and np.mean(ious) >= 0.98, (label, name, ious)
            ours, theirs = tracks(outs["inline"] / name)["objects"]["0"], tracks(outs[label] / name)["objects"]["0"]
            gap = np.abs(np.array([r["box"] for r in theirs]) - np.array([r["box"] for r in ours]))
            assert gap.max() <= 0.5, (label, name, gap.max())
    assert summary(outs["ray"])["executor"]["kind"] == "ray"


@pytest.mark.slow
def test_batch_runs_siammask_nano_in_worker_processes(clip, capsys, tmp_path):
    """The NanoTrack-based mask model through ``batch``: two local worker processes give the masks
    and boxes it gives in one process, from its network (not a filled box)."""
    manifest = write_manifest(tmp_path / "m.jsonl", [entry(clip, clip["video"]), entry(clip, clip["folder"])])
    outs = {label: tmp_path / label for label in ("inline", "local")}
    for label, args in (("inline", []), ("local", ["--workers", "2"])):
        code, _, err = invoke(capsys, "batch", manifest, "--out", outs[label], "--quiet", "--threads", "1",
                              "--model", "siammask-nano", *args)
        assert code == 0 and statuses(outs[label]) == {"clip": "done", "frames": "done"}, err
    for name in ("clip", "frames"):
        meta = tracks(outs["local"] / name)["meta"]
        assert meta["model"] == "siammask-nano" and meta["mask_source"] == "network", meta
        ious = mask_iou(outs["inline"] / name, outs["local"] / name)
        assert len(ious) == N and np.mean(ious) >= 0.98, (name, ious)
        ours, theirs = tracks(outs["inline"] / name)["objects"]["0"], tracks(outs["local"] / name)["objects"]["0"]
        assert np.abs(np.array([r["box"] for r in theirs]) - np.array([r["box"] for r in ours])).max() <= 0.5


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the module's later Ray tests (commands use it instead of their own)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_a_model_that_does_not_load_on_ray_is_one_line_before_any_work(clip, capsys, tmp_path, ray_instance):
    manifest = write_manifest(tmp_path / "m.jsonl", [entry(clip, clip["video"])])
    code, _, err = invoke(capsys, "batch", manifest, "--out", tmp_path / "out", "--executor", "ray", "--model",
                          "no-such-model")
    assert code == 1 and err.startswith("Error: ") and err.count("\n") == 1 and "no-such-model" in err, err
    assert not (tmp_path / "out").exists()


# eval --workers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def benchmarks(tmp_path_factory) -> dict[str, Path]:
    """A DAVIS folder and a box-sequence folder of three generated 8-frame clips each."""
    root = tmp_path_factory.mktemp("bench")
    for k in range(3):
        images, masks = root / "davis/JPEGImages/480p" / f"s{k}", root / "davis/Annotations/480p" / f"s{k}"
        seq = root / "boxes" / f"s{k}"
        for folder in (images, masks, seq / "frames"):
            folder.mkdir(parents=True)
        boxes = []
        for i, frame in enumerate(synthetic.frames(8, SIZE, seed=k)):
            cv2.imwrite(str(images / f"{i:05d}.jpg"), frame.image)
            cv2.imwrite(str(seq / "frames" / f"{i:05d}.jpg"), frame.image)
            Image.fromarray(frame.mask.astype(np.uint8) * 255).save(masks / f"{i:05d}.png")
            boxes.append(",".join(f"{v:g}" for v in frame.box))
        (seq / "groundtruth.txt").write_text("\n".join(boxes) + "\n")
    return {"davis": root / "davis", "boxes": root / "boxes"}


def scores(out: Path) -> dict:
    """results.json without what differs between runs (speeds)."""
    results = json.loads((out / "results.json").read_text())
    for key in ("fps", "track_seconds"):
        results["meta"].pop(key)
    return results


@pytest.mark.slow
def test_eval_on_worker_processes_scores_as_in_one_process(benchmarks, capsys, tmp_path):
    for bench, extra in (("davis", []), ("boxes", ["--restart", "--eao-interval", "1,8"])):
        alone, pooled = tmp_path / f"{bench}-1", tmp_path / f"{bench}-2"
        code, _, err = invoke(capsys, "eval", bench, benchmarks[bench], *extra, "--threads", "1", "--out", alone,
                              "--quiet")
        assert code == 0, err
        code, _, err = invoke(capsys, "eval", bench, benchmarks[bench], *extra, "--workers", "2", "--threads", "1",
                              "--out", pooled, "--quiet")
        assert code == 0, err
        assert scores(pooled) == scores(alone)
        assert list(scores(alone)["sequences"]) == ["s0", "s1", "s2"] and scores(alone)["meta"]["tracked_frames"] > 0
    assert scores(tmp_path / "davis-1")["summary"]["J_mean"] > 0.5  # the shipped model follows the clips (0.66)


@pytest.mark.slow
def test_eval_on_ray_scores_as_in_one_process(benchmarks, capsys, tmp_path, ray_instance):
    alone, on_ray = tmp_path / "alone", tmp_path / "ray"
    assert invoke(capsys, "eval", "davis", benchmarks["davis"], "--threads", "1", "--out", alone, "--quiet")[0] == 0
    code, _, err = invoke(capsys, "eval", "davis", benchmarks["davis"], "--executor", "ray", "--workers", "2",
                          "--threads", "1", "--out", on_ray, "--quiet")
    assert code == 0, err
    assert scores(on_ray) == scores(alone)


def test_eval_pred_refuses_workers(benchmarks, capsys, tmp_path):
    code, _, err = invoke(capsys, "eval", "davis", benchmarks["davis"], "--pred", tmp_path, "--workers", "2")
    assert code == 2 and "--pred only scores" in err and err.count("\n") == 1, err

