"""The CUDA paths. Without a GPU: ``--device cuda`` is a one-line error of every command that takes
it, before any input is opened. With one (these skip elsewhere; ``scripts/gpu_check.py`` runs them
on a GPU machine): the official architecture in fp32 stays within the golden tolerances, fp16 keeps
fp32's decisions as bf16 must (``tests/test_bf16.py``), and CUDA fp32 agrees with the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from siamtrack.api import from_checkpoint
from siamtrack.cli import cli as cli_group
from tests.conftest import REPO
from tests.test_bf16 import SQUARE_STEPS, check_decisions, golden_case, half_against_fp32, teacher_forced
from tests.test_cli import boxes_tree, davis_tree, grey_frames
from tests.test_golden import CASES, check_free_run
from tests.test_tracker_api import START_BOX, frame_with_square

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (scripts/gpu_check.py runs these on one)")
NO_CUDA_MESSAGE = "no CUDA device is available"


def command_lines(tmp_path) -> dict[str, list[str]]:
    """Every command that takes --device, with inputs it would accept (cameras and TraX are never reached)."""
    frames_dir = tmp_path / "frames"
    grey_frames(frames_dir, 3, "png")
    manifest = tmp_path / "clips.jsonl"
    manifest.write_text(f'{{"source": "{frames_dir}", "bbox": [[10, 10, 20, 20]]}}\n')
    box = ["--bbox", "10,10,20,20"]
    return {
        "run": ["run", str(frames_dir), *box, "--out", str(tmp_path / "out")],
        "export-masks": ["export-masks", str(frames_dir), *box, "--out", str(tmp_path / "out")],
        "webcam": ["webcam", "--camera", "7", "--no-window", *box, "--out", str(tmp_path / "out")],
        "eval davis": ["eval", "davis", str(davis_tree(tmp_path / "DAVIS")), "--out", str(tmp_path / "out")],
        "eval boxes": ["eval", "boxes", str(boxes_tree(tmp_path / "boxes")), "--out", str(tmp_path / "out")],
        "bench": ["bench", "--frames", "1", "--warmup", "0"],
        "batch": ["batch", str(manifest), "--out", str(tmp_path / "out")],
        "vot": ["vot"],
        "train": ["train", "configs/siammask-lite.toml", "--out", str(tmp_path / "out")],
    }


@pytest.mark.parametrize("command", ["run", "export-masks", "webcam", "eval davis", "eval boxes", "bench", "batch",
                                     "vot", "train"])
def test_device_cuda_without_a_gpu_is_one_line_error(command, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a GPU machine checks this too
    monkeypatch.setenv("TRAX", "1")  # vot would otherwise stop first: it refuses to start outside the toolkit
    monkeypatch.chdir(REPO)  # train's recipe path
    result = CliRunner().invoke(cli_group, [*command_lines(tmp_path)[command], "--device", "cuda"])
    assert result.exit_code == 1, result.output
    assert result.output.strip().count("\n") == 0, result.output
    assert NO_CUDA_MESSAGE in result.output and "--device cpu" in result.output
    assert not (tmp_path / "out").exists()


@needs_cuda
def test_cuda_fp32_agrees_with_the_cpu(synthetic_checkpoint):
    """The seeded official network, teacher-forced: same cells, masks and centres on both devices."""
    cpu = from_checkpoint(synthetic_checkpoint, preset="davis", device="cpu", precision="fp32")
    gpu = from_checkpoint(synthetic_checkpoint, preset="davis", device="cuda", precision="fp32")
    for t in (cpu, gpu):
        t.init(frame_with_square(*START_BOX[:2]), START_BOX)
    measured = teacher_forced(cpu, gpu, SQUARE_STEPS)
    assert all(f.same_cell for f in measured)
    assert min(f.iou for f in measured) >= 0.99 and max(f.distance for f in measured) <= 1e-2, measured


@needs_cuda
def test_fp16_keeps_fp32_decisions_on_cuda(synthetic_checkpoint):
    _, measured = half_against_fp32(synthetic_checkpoint, "davis", frame_with_square(*START_BOX[:2]), START_BOX,
                                    SQUARE_STEPS, "cuda", "fp16")
    check_decisions(measured, "moving square", max_flips=0, min_mean_iou=0.95)
    assert np.median([f.distance for f in measured]) <= 2.0


@needs_cuda
@pytest.mark.parametrize("config,seq", CASES)
def test_golden_free_run_on_cuda_fp32(golden_dir, golden_checkpoint, config, seq):
    check_free_run(from_checkpoint(golden_checkpoint, preset=config, device="cuda", precision="fp32"),
                                   config, seq)


@needs_cuda
@pytest.mark.parametrize("config,seq", CASES)
def test_golden_fp16_keeps_fp32_decisions_on_cuda(golden_dir, golden_checkpoint, config, seq):
    half, measured = half_against_fp32(golden_checkpoint, config, *golden_case(config, seq), "cuda", "fp16")
    check_decisions(measured, f"{config}/{seq}")
    assert half.exact_decisions <= 0.5 * len(measured), f"{half.exact_decisions} of {len(measured)} re-made in fp32"
