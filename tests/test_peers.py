"""OpenCV's learned trackers as peers: their registry entries (several files, subpaths, registry hashes),
the lookup in ../shared/pretrained, downloads from a local server, and the peers in eval and bench.

Everything that needs the ONNX files skips where ../shared/pretrained is absent; the registry's
shape and the one-line errors do not need them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from siamtrack import weights
from siamtrack.choices import TRACKERS
from siamtrack.cli import cli
from siamtrack.errors import SiamtrackError, WeightsDownloadError
from siamtrack.eval import baselines
from siamtrack.eval.boxes import box_polygon, polygon_iou
from siamtrack.io import synthetic
from tests.conftest import SHARED, need
from tests.http_helpers import full, serving

PRETRAINED = SHARED / "pretrained"
DATA = SHARED / "data"
PEERS = ("opencv-nano", "opencv-vit")
FILES = {"opencv-nano": ["nanotrack/onnx-v2/nanotrack_backbone_sim.onnx", "nanotrack/onnx-v2/nanotrack_head_sim.onnx"],
         "opencv-vit": ["vittrack/object_tracking_vittrack_2023sep.onnx"]}


@pytest.fixture
def empty_lookup(tmp_path, monkeypatch) -> Path:
    """A weights folder of our own, empty, and an empty home (so an empty user cache)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(weights.ENV_DIR, str(tmp_path / "weights"))
    return tmp_path / "weights"


@pytest.fixture
def pretrained(monkeypatch) -> Path:
    """The lookup pointed at ../shared/pretrained (skips where it is absent)."""
    monkeypatch.setenv(weights.ENV_DIR, str(need(PRETRAINED)))
    return PRETRAINED


def run(*args) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line(text: str) -> str:
    assert text.strip().count("\n") == 0, text
    return text


# Registry --------------------------------------------------------------------------------------


def test_peers_are_registry_models_with_files_urls_and_hashes():
    for name in PEERS:
        entry = weights.get_entry(name)
        assert [f.file for f in entry.files] == FILES[name] and entry.format == "onnx" and entry.preset is None
        assert "Apache-2.0" in entry.license
        for f in entry.files:
            # a file that cannot be loaded to check it must carry its size and SHA-256
            assert f.size > 100_000 and len(f.sha256) == 64
            assert f.url.startswith("https://raw.githubusercontent.com/") and f.url.endswith(Path(f.file).name)
    nano = weights.get_entry("opencv-nano").files
    assert all("/248663fde6bf7c40190cf10ee396d5662919ecd3/NanoTrack/models/nanotrackv2/" in f.url for f in nano)
    assert set(baselines.TRACKERS) == set(TRACKERS) - {"siammask"}  # the CLI's names are the ones implemented


def test_single_file_entries_read_as_before():
    entry = weights.get_entry("siammask-lite")
    assert len(entry.files) == 1 and entry.format == "checkpoint"
    assert (entry.file, entry.size, entry.sha256) == (entry.files[0].file, entry.files[0].size, entry.files[0].sha256)


def test_registry_hashes_are_the_shared_files_hashes():
    sums = dict(reversed(line.split()) for line in need(PRETRAINED / "SHA256SUMS").read_text().splitlines())
    for name in PEERS:
        for f in weights.get_entry(name).files:
            assert f.sha256 == sums[f.file] and f.size == (PRETRAINED / f.file).stat().st_size


def test_lookup_list_and_verify_find_the_files_beneath_the_folder(pretrained):
    assert weights.find_files("opencv-nano") == [pretrained / f for f in FILES["opencv-nano"]]
    result = run("weights", "verify", "opencv-nano")
    assert result.exit_code == 0, result.output
    assert result.output.count("check: size and SHA-256 match the registry") == 2
    result = run("weights", "verify", pretrained / FILES["opencv-vit"][0])
    assert result.exit_code == 0 and "match the registry (opencv-vit)" in result.output
    result = run("weights", "list")
    row = next(line for line in result.output.splitlines() if "opencv-vit" in line)
    assert "yes ($SIAMTRACK_WEIGHTS)" in row


def test_absent_files_are_one_line_errors(empty_lookup):
    for name in PEERS:
        with pytest.raises(SiamtrackError) as exc:
            baselines.OpenCVTracker(name)
        msg = one_line(str(exc.value))
        assert f"run `siamtrack weights download {name}`" in msg and str(empty_lookup / FILES[name][0]) in msg
        assert "--checkpoint" not in msg  # there is no checkpoint to pass for an OpenCV tracker
    result = run("eval", "boxes", empty_lookup.parent, "--tracker", "opencv-vit", "--out", empty_lookup.parent / "o")
    assert result.exit_code == 1 and "siamtrack weights download opencv-vit" in one_line(result.output)
    result = run("weights", "verify", "opencv-nano")
    assert result.exit_code == 1 and "not found" in one_line(result.output)
    from siamtrack.api import from_pretrained

    with pytest.raises(SiamtrackError, match="not a SiamMask checkpoint.*--tracker opencv-nano"):
        from_pretrained("opencv-nano")


# Download from a local server -------------------------------------------------------------------


@pytest.fixture
def served(monkeypatch):
    """The real registry with the peers' URLs pointed at a local server that serves the shared files."""
    need(PRETRAINED)
    real = weights._registry()
    with serving() as site:
        models = []
        for model in real["models"]:
            model = json.loads(json.dumps(model))
            for f in model.get("files", []):
                f["url"] = site.route("/" + f["file"], full((PRETRAINED / f["file"]).read_bytes()))
            models.append(model)
        monkeypatch.setattr(weights, "_registry", lambda: {**real, "models": models})
        yield site


def test_download_fetches_every_file_into_its_subfolder(served, empty_lookup):
    result = run("weights", "download", "opencv-nano")
    assert result.exit_code == 0, result.output
    printed = [line for line in result.output.splitlines() if line.strip()]  # the progress bar leaves blank lines
    assert printed == [str(empty_lookup / f) for f in FILES["opencv-nano"]]
    for f in FILES["opencv-nano"]:
        assert (empty_lookup / f).read_bytes() == (PRETRAINED / f).read_bytes()
    assert not list(empty_lookup.rglob("*.part")) and not list(empty_lookup.rglob(weights.HASH_RECORD))
    assert weights.download_files("opencv-nano", progress=False) == [empty_lookup / f for f in FILES["opencv-nano"]]
    assert served.ranges == [None, None]  # present: nothing fetched twice
    assert baselines.OpenCVTracker("opencv-nano").learned  # and the peer runs from them


def test_a_corrupt_download_is_refused_and_deleted(served, empty_lookup):
    file = FILES["opencv-vit"][0]
    body = bytearray((PRETRAINED / file).read_bytes())
    body[1000] ^= 0xFF
    served.route("/" + file, full(bytes(body)))
    with pytest.raises(WeightsDownloadError) as exc:
        weights.download_files("opencv-vit", progress=False)
    assert "SHA-256 mismatch" in one_line(str(exc.value))
    assert not empty_lookup.exists() or not [p for p in empty_lookup.rglob("*") if p.is_file()]


def test_one_url_for_several_files_is_refused(empty_lookup):
    result = run("weights", "download", "opencv-nano", "--url", "http://127.0.0.1:9/x.onnx")
    assert result.exit_code == 1 and "has 2 files and --url names one" in one_line(result.output)


# The peers as trackers ----------------------------------------------------------------------------


@pytest.mark.parametrize("name,floor", [("opencv-nano", (0.85, 0.75)), ("opencv-vit", (0.85, 0.8))])
def test_peers_follow_the_generated_target(pretrained, name, floor):
    clip = list(synthetic.frames(25, (320, 240)))
    tracker = baselines.OpenCVTracker(name)
    assert tracker.init(clip[0].image, [clip[0].box]) == [0]
    ious, scores = [], []
    for frame in clip[1:]:
        (r,) = tracker.track(frame.image)
        ious.append(polygon_iou(box_polygon(r.box), box_polygon(frame.box)))
        scores.append(r.score)
        assert r.mask.sum() == pytest.approx(r.box[2] * r.box[3], rel=0.1)  # the filled box
    assert np.mean(ious) > floor[0] and min(ious) > floor[1]
    assert all(0.0 <= s <= 1.0 for s in scores) and np.mean(scores) > 0.5
    assert tracker.flops_per_frame() is None and tracker.last_timings["total"] > 0


def test_eval_boxes_scores_the_peers(pretrained, tmp_path):
    root = need(DATA / "boxes")
    expected = {"opencv-nano": {"Crossing": 0.752, "bag": 0.683}, "opencv-vit": {"Crossing": 0.775, "bag": 0.684}}
    for name, aucs in expected.items():
        out = tmp_path / name
        result = run("eval", "boxes", root, "--tracker", name, "--threads", 2, "--max-frames", 30, "--out", out,
                     "--quiet")
        assert result.exit_code == 0, result.output
        results = json.loads((out / "results.json").read_text())
        assert results["meta"]["tracker"] == name and results["meta"]["backend"] == "opencv"
        got = {seq: round(s["success_auc"], 3) for seq, s in results["sequences"].items()}
        assert got == pytest.approx(aucs, abs=0.02)


def test_eval_davis_scores_the_peers_boxes_and_says_the_mask_is_the_box(pretrained, tmp_path):
    root = need(DATA / "davis")
    result = run("eval", "davis", root, "--tracker", "opencv-vit", "--sequences", "blackswan", "--max-frames", 12,
                 "--threads", 2, "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "opencv-vit gives boxes only: its mask is its filled box" in result.output
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    seq = results["sequences"]["blackswan"]
    assert seq["box_auc"] == pytest.approx(0.876, abs=0.02)
    assert 0.0 < seq["J_mean"] < seq["box_auc"]  # a box covers a swan's mask badly, its bounding box well
    assert "box_auc" in (tmp_path / "o" / "results.md").read_text()


def test_bench_times_the_peers_beside_each_other(pretrained, tmp_path):
    out = tmp_path / "bench.json"
    result = run("bench", "--tracker", "opencv-vit,opencv-nano", "--threads", 1, "--frames", 3, "--warmup", 1,
                 "--size", "320x240", "--json", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [r["tracker"] for r in report["results"]] == ["opencv-vit", "opencv-nano"]
    for r in report["results"]:
        assert r["timed_frames"] == 3 and r["fps"] > 0 and r["threads"] == 1 and r["gflops_per_frame"] is None
        assert list(r["stages"]) == ["total"]
    assert report["model"] is None and report["trackers"] == ["opencv-vit", "opencv-nano"]
    result = run("bench", "--tracker", "opencv-nano", "--lost")
    assert result.exit_code == 2 and "--tracker siammask only" in result.output


def test_bench_times_several_models_and_the_peers_in_one_run(pretrained, tmp_path):
    """Every model's cases and the peers share the frames; each model's ratio is to its own reference."""
    out = tmp_path / "bench.json"
    result = run("bench", "--model", "siammask-lite,nanotrack-v3", "--tracker", "siammask,opencv-nano",
                 "--precision", "fp32", "--threads", 1, "--frames", 2, "--warmup", 1, "--size", "320x240",
                 "--json", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    rows = [(r["model"], r["precision"]) for r in report["results"]]
    assert rows == [("siammask-lite", "fp32"), ("siammask-lite", "fp32-reference"), ("nanotrack-v3", "fp32"),
                    ("nanotrack-v3", "fp32-reference"), ("opencv-nano", "n/a")]
    assert report["models"] == ["siammask-lite", "nanotrack-v3"]
    by = {(r["model"], r["precision"]): r for r in report["results"]}
    for name in report["models"]:
        assert by[(name, "fp32-reference")]["vs_reference"] == 1.0
        fast = by[(name, "fp32")]
        assert fast["vs_reference"] == pytest.approx(fast["fps"] / by[(name, "fp32-reference")]["fps"])
    assert "nanotrack-v3 fp32" in result.output and "siammask-lite fp32" in result.output
    result = run("bench", "--model", "nanotrack-v3,nanotrack-v3")
    assert result.exit_code == 2 and "twice" in result.output
