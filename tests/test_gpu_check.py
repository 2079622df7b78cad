"""scripts/gpu_check.py, the one command a GPU machine runs for docs/eval.md's CUDA table: its dry
run (the same steps on the CPU, tiny sizes) must keep working, and its checks must catch a record
that lacks a figure, so a GPU session does not find out there."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
gpu_check = sys.modules["gpu_check"] = importlib.util.module_from_spec(spec)  # dataclasses look it up there
spec.loader.exec_module(gpu_check)


@pytest.mark.slow
def test_dry_run_writes_every_record_and_figure(tmp_path):
    """About a minute on two shared cores: every step, each in its own process."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "scripts/gpu_check.py", "--dry-run", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "gpu_check.json").read_text())
    plan = gpu_check.DRY
    labels = [s["label"] for s in report["steps"]]
    assert labels[:3] == ["env", "tests", "golden"] and labels[-2:] == ["batch workers=1", "batch workers=2"]
    assert all(s["ok"] for s in report["steps"]), [s["problem"] for s in report["steps"] if not s["ok"]]
    env = report["steps"][0]["record"]
    assert env["torch"] and env["clip"]["size"] == list(plan.size) and env["clip"]["frames"] == plan.clip_frames
    tests = report["steps"][1]["record"]
    assert tests["failures"] == tests["errors"] == 0 and tests["passed"] >= 9  # the --device cuda errors ran
    fig = report["figures"]
    assert set(fig["bench"]) >= {"official", "siammask-lite"}
    for by_objects in fig["bench"].values():
        assert set(by_objects) == {str(n) for n in plan.objects}
        assert all(v["fps"] > 0 and v["track_ms"] > 0 for by_p in by_objects.values() for v in by_p.values())
    assert set(fig["run"]) == {"official fp32", "default fp32 bare"}
    assert all(v["tracking_fps"] > 0 for v in fig["run"].values())
    assert fig["batch"]["1"]["fps"] > 0 and fig["batch"]["speedup_2_vs_1"] > 0
    # on the CPU, fp32 against the golden data (or the CPU itself) is within the tolerances
    assert fig["golden"]["fp32"] is True and fig["golden"]["fp32-no-tf32"] is True
    golden = next(s["record"] for s in report["steps"] if s["step"] == "golden")
    for case in golden["cases"].values():  # numbers and booleans in the JSON, not their strings
        assert case["fp32"]["within_golden"] is True and case["fp32"]["argmax_differs"] == 0
        assert case["fp32"]["max_centre_px"] <= 1e-3 and case["fp32"]["min_mask_iou"] >= 0.99
    assert 0.5 <= fig["golden"]["fp32-reference_mean_mask_iou_vs_fp32"] <= 1.0
    table = (out / "gpu_check.md").read_text()
    assert "| bench fps (track ms) | official, 2 object(s), fp32 |" in table and "dry run" in table
    assert "===== batch workers=2 =====" in (out / "gpu_check.log").read_text()


def bench_record(precisions: list[str]) -> dict:
    results = [{"precision": p, "fps": 10.0, "stages": {"total": {"median_ms": 5.0}}} for p in precisions]
    return {"rc": 0, "model": "official", "objects": 1, "report": {"results": results}}


def test_checks_catch_missing_figures():
    plan = gpu_check.GPU
    assert gpu_check.check("bench", bench_record(["fp32", "fp16", "bf16"]), plan) is None
    assert gpu_check.check("bench", bench_record(["fp32", "fp16", "bf16", "fp32-reference"]), plan) is None  # --vs
    assert "fp32" in gpu_check.check("bench", bench_record(["fp32"]), plan)
    assert gpu_check.check("bench", {"rc": 1, "report": None}, plan) == "exit code 1"
    run = {"rc": 0, "frames": plan.clip_frames, "tracking_fps": 30.0, "precision": "fp16", "precision_used": "fp16"}
    assert gpu_check.check("run", run, plan) is None
    short = plan.clip_frames - 1
    assert f"{short} of {plan.clip_frames}" in gpu_check.check("run", {**run, "frames": short}, plan)
    assert gpu_check.check("run", {**run, "precision_used": "fp32"}, plan) is not None
    batch = {"rc": 0, "counts": {"done": plan.batch_entries}, "fps": 50.0}
    assert gpu_check.check("batch", batch, plan) is None
    assert gpu_check.check("batch", {**batch, "counts": {"done": 1}}, plan) is not None
    assert gpu_check.check("env", {"torch": "2.11", "torch_cuda": None, "clip": {}, "optional": {},
                                   "cuda_available": False}, plan) == "torch sees no CUDA device"
    assert gpu_check.check("tests", {"rc": 1, "error": "pytest is not installed"}, plan) == "pytest is not installed"


def test_a_step_that_hangs_is_killed_and_recorded(tmp_path, monkeypatch):
    """The step's whole process group goes at its timeout; the record says so and the run goes on."""
    hang = tmp_path / "hang.sh"
    hang.write_text("sleep 30 &\necho started\nsleep 30\n")  # and a grandchild that must go too
    monkeypatch.setattr(gpu_check.sys, "executable", "bash")
    monkeypatch.setattr(gpu_check, "__file__", str(hang))  # the child's command: bash hang.sh --child env ...
    with open(tmp_path / "log", "w") as log:
        rec = gpu_check.run_step("env", {}, 2.0, True, tmp_path, log, {"PATH": "/usr/bin:/bin"})
    assert rec["error"] == "timed out after 2 s" and rec["step_seconds"] < 10
    assert (tmp_path / "log").read_text() == "started\n"
    assert subprocess.run(["pgrep", "-f", str(hang)], capture_output=True).returncode == 1  # none left


def test_nvidia_smi_is_read_for_the_driver_and_the_memory_in_use(tmp_path, monkeypatch):
    """A stand-in nvidia-smi answering as one on an H200 does (CSV, no header, no units)."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text('#!/bin/sh\ncase "$1" in\n  *memory.used*) echo "1234, 56" ;;\n'
                    '  *) echo "NVIDIA H200, 580.159.03, 143771, 1980, 700.00" ;;\nesac\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{gpu_check.os.environ['PATH']}")
    assert gpu_check.nvidia_smi("name,driver_version")[0][:2] == ["NVIDIA H200", "580.159.03"]
    with gpu_check.GpuSampler() as sampler:
        gpu_check.time.sleep(1.3)
    assert sampler.summary() == {"smi_peak_memory_mb": 1234.0, "smi_mean_utilisation": 56.0}
