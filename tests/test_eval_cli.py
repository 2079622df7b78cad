"""``siamtrack eval`` end to end on the shared dev sequences (skipped when ../shared/data is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from siamtrack.cli import cli

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DAVIS_KEYS = {"J_mean", "J_recall", "J_decay", "F_mean", "F_recall", "F_decay", "JF_mean"}


def data(name: str) -> Path:
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"shared/data/{name} not present (shared data is optional)")
    return path


def run(*args: str):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def check_davis(out: Path, sequence: str, frames: int) -> dict:
    results = json.loads((out / "results.json").read_text())
    summary = results["summary"]
    assert set(summary) >= DAVIS_KEYS
    for key in ("J_mean", "J_recall", "F_mean", "F_recall", "JF_mean"):
        assert 0.0 <= summary[key] <= 1.0
    assert -1.0 <= summary["J_decay"] <= 1.0 and -1.0 <= summary["F_decay"] <= 1.0
    assert summary["JF_mean"] == pytest.approx((summary["J_mean"] + summary["F_mean"]) / 2)
    seq = results["sequences"][sequence]
    assert seq["frames"] == frames and seq["scored_frames"] == frames - 2
    assert len(seq["objects"]["1"]["J_per_frame"]) == frames - 2
    assert results["meta"]["fps"] > 0 and results["meta"]["tracked_frames"] == frames - 1
    assert (out / "results.md").is_file()
    return results


def test_eval_davis_with_opencv_mil(tmp_path):
    root = data("davis")
    out = tmp_path / "mil"
    result = run("eval", "davis", root, "--tracker", "opencv-mil", "--sequences", "car-shadow",
                 "--max-frames", 12, "--out", out)
    assert result.exit_code == 0, result.output
    results = check_davis(out, "car-shadow", 12)
    assert results["meta"]["tracker"] == "opencv-mil"
    # The filled box of a tracked car overlaps its mask well, but a box is never the mask.
    assert 0.3 < results["summary"]["J_mean"] < 0.95
    assert "overall" in result.output


@pytest.mark.slow
def test_eval_davis_with_siammask_and_rescoring_its_masks(tmp_path, synthetic_checkpoint):
    root = data("davis")
    out, masks = tmp_path / "siammask", tmp_path / "masks"
    result = run("eval", "davis", root, "--checkpoint", synthetic_checkpoint, "--precision", "fp32",
                 "--device", "cpu", "--sequences", "blackswan", "--max-frames", 5, "--out", out,
                 "--save-masks", masks, "--quiet")
    assert result.exit_code == 0, result.output
    tracked = check_davis(out, "blackswan", 5)
    assert tracked["meta"]["arch"] == "siammask_sharp" and tracked["meta"]["preset"]["name"] == "davis"
    assert sorted(p.name for p in (masks / "blackswan").iterdir()) == [f"{i:05d}.png" for i in range(5)]
    rescored = run("eval", "davis", root, "--pred", masks, "--sequences", "blackswan", "--max-frames", 5,
                   "--out", tmp_path / "rescored", "--quiet")
    assert rescored.exit_code == 0, rescored.output
    again = json.loads((tmp_path / "rescored" / "results.json").read_text())

    def masks_only(summary: dict) -> dict:  # box AUC scores the tracker's boxes; --pred has masks only
        return {k: v for k, v in summary.items() if not k.startswith("box_")}

    assert masks_only(again["summary"]) == masks_only(tracked["summary"])
    assert 0.0 <= again["summary"]["box_auc"] <= 1.0


def test_eval_boxes_with_opencv_mil_one_pass_and_restart(tmp_path):
    root = data("boxes")
    for restart in (False, True):
        out = tmp_path / ("restart" if restart else "ope")
        args = ["eval", "boxes", root, "--tracker", "opencv-mil", "--max-frames", 15, "--out", out, "--quiet"]
        result = run(*args, *(["--restart"] if restart else []))
        assert result.exit_code == 0, result.output
        results = json.loads((out / "results.json").read_text())
        assert set(results["sequences"]) == {"bag", "Crossing"}
        assert results["sequences"]["bag"]["groundtruth"] == "poly8"
        assert results["sequences"]["Crossing"]["groundtruth"] == "xywh"
        summary = results["summary"]
        if restart:
            assert summary["failures"] >= 0 and summary["robustness"] == summary["failures"] / 2
            assert 0.0 < summary["accuracy"] <= 1.0
        else:
            assert 0.0 < summary["success_auc"] < 1.0 and 0.0 <= summary["precision_20"] <= 1.0
            assert len(results["sequences"]["bag"]["overlaps"]) == 15
            assert len(summary["success_curve"]) == 21
