"""``siamtrack bench``: CPU description parsing, the peak estimate, timing bookkeeping, and one tiny run."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from siamtrack import bench
from siamtrack.cli import cli
from siamtrack.commands.bench import _frames, parse_size

INTEL = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model name\t: Intel(R) Xeon(R) Platinum 8480+
cpu MHz\t\t: 2000.000
flags\t\t: fpu sse2 avx fma avx2 avx512f avx512_bf16 amx_bf16 amx_tile
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
"""
ZEN4 = """vendor_id\t: AuthenticAMD
cpu family\t: 25
model name\t: AMD EPYC 9654 96-Core Processor
cpu MHz\t\t: 2400.000
flags\t\t: fpu sse2 avx fma avx2 avx512f avx512_bf16
"""
OLD = """vendor_id\t: GenuineIntel
model name\t: Old CPU
flags\t\t: fpu sse2 avx fma avx2
"""
ZEN5 = """vendor_id\t: AuthenticAMD
cpu family\t: 26
model name\t: AMD EPYC 9575F 64-Core Processor
cpu MHz\t\t: 3300.000
flags\t\t: fpu sse2 avx fma avx2 avx512f avx512_bf16
"""


def test_parse_cpu_info_reads_model_clock_and_bf16_flags():
    info = bench.parse_cpu_info(INTEL, "CPU max MHz:                     3800.0000\n")
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["mhz"] == 3800.0 and "lscpu" in info["mhz_source"]  # the max clock wins over the current one
    assert info["avx512_bf16"] and info["amx_bf16"] and info["native_bf16"]
    zen = bench.parse_cpu_info(ZEN4)
    assert zen["family"] == 25 and zen["mhz"] == 2400.0 and not zen["amx_bf16"] and zen["native_bf16"]
    old = bench.parse_cpu_info(OLD)
    assert old["mhz"] is None and not old["native_bf16"]


# Expected peaks from the vendors' core descriptions, not from siamtrack's table: Sapphire Rapids has
# two 512-bit FMA ports (16 fp32 lanes x 2 FLOPs x 2) and AMX (1024 bf16 FLOPs per cycle); Zen 4 runs
# 512-bit FMAs on its two 256-bit units (8 lanes x 2 x 2) and VDPBF16PS does 2 products per fp32 lane;
# Zen 5 has full 512-bit units; Haswell-class AVX2 has two 256-bit FMA ports.
@pytest.mark.parametrize("cpuinfo,lscpu,cores,half,peak", [
    (INTEL, "CPU max MHz: 3800.0000", 4, False, 4 * 3.8e9 * 64),  # the max clock, not cpuinfo's 2000 MHz
    (INTEL, "CPU max MHz: 3800.0000", 4, True, 4 * 3.8e9 * 1024),
    (ZEN4, "", 2, False, 2 * 2.4e9 * 32),
    (ZEN4, "", 2, True, 2 * 2.4e9 * 64),
    (ZEN5, "", 1, False, 3.3e9 * 64),
    (OLD, "CPU max MHz: 3000.0000", 2, True, 2 * 3e9 * 32),  # no native bf16: the fp32 rate
], ids=["spr-fp32", "spr-amx", "zen4-fp32", "zen4-bf16", "zen5-fp32", "avx2-bf16"])
def test_cpu_peak_matches_the_vendors_core_figures(cpuinfo, lscpu, cores, half, peak):
    estimate, why = bench.peak_flops(bench.parse_cpu_info(cpuinfo, lscpu), cores=cores, half=half)
    assert estimate == pytest.approx(peak) and f"{cores} core(s)" in why


def test_no_peak_without_a_clock_and_gpu_datasheet_peaks():
    assert bench.peak_flops(bench.parse_cpu_info(OLD), cores=1, half=False)[0] is None
    # NVIDIA datasheets, dense: the PCIe H100 is slower than the SXM one the shorter name would match
    assert bench.gpu_peak("NVIDIA H100 80GB HBM3", half=True)[0] == 989e12
    assert bench.gpu_peak("NVIDIA H100 80GB HBM3", half=False)[0] == 67e12
    assert bench.gpu_peak("NVIDIA H100 PCIe", half=False)[0] == 51e12
    assert bench.gpu_peak("NVIDIA H200", half=False)[0] == 67e12
    assert bench.gpu_peak("Some GPU", half=False)[0] is None


def test_percentiles_in_milliseconds():
    p = bench.percentiles([i / 1000 for i in range(1, 12)])  # 1..11 ms
    assert p["median_ms"] == pytest.approx(6.0)
    assert p["p10_ms"] == pytest.approx(2.0) and p["p90_ms"] == pytest.approx(10.0)
    assert p["mean_ms"] == pytest.approx(6.0)


class CountingTracker:
    """Reports scripted stage times (the n-th track step takes n ms per stage) and logs the call order."""

    def __init__(self, name, log):
        self.name, self.log = name, log
        self.profile = False
        self.steps = 0
        self.last_timings: dict[str, float] = {}

    def init(self, frame, boxes):
        self.log.append((self.name, "init"))
        self.last_timings = {"crop": 0.001, "backbone": 0.002}

    def track(self, frame):
        assert self.profile
        self.log.append((self.name, "track"))
        self.steps += 1
        stages = {s: self.steps / 1000 for s in ("crop", "backbone", "heads", "refine", "post")}
        self.last_timings = {**stages, "total": 5 * self.steps / 1000}


def test_cases_are_interleaved_and_warmup_is_not_timed():
    log: list = []
    cases = [bench.Case(CountingTracker("a", log)), bench.Case(CountingTracker("b", log))]
    frames = [np.zeros((4, 4, 3), np.uint8)] * 9  # 1 init + 3 warm-up + 5 timed
    bench.time_cases(cases, frames, [(0, 0, 2, 2)], warmup=3, init_repeats=4)
    assert log[:4] == [("a", "init"), ("b", "init"), ("a", "init"), ("b", "init")]
    assert log[10:14] == [("a", "track"), ("b", "track"), ("a", "track"), ("b", "track")]
    for case in cases:
        assert case.tracker.steps == 8 and len(case.wall) == 5 and not case.tracker.profile
        assert np.median(case.stages["heads"]) == pytest.approx(0.006)  # steps 4..8 were timed
        assert len(case.init["total"]) == 4 and case.init["backbone"] == [0.002] * 4
    with pytest.raises(ValueError):
        bench.time_cases(cases, frames[:3], [(0, 0, 2, 2)], warmup=3)


def test_source_frames_loop_and_resize(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((40, 60, 3), 50 * i, np.uint8))
    images, boxes, described = _frames(str(tmp_path), 7, (30, 20), ())
    assert len(images) == 7 and images[0].shape == (20, 30, 3)
    assert int(images[4][0, 0, 0]) == 50  # frame 4 is frame 1 again
    assert boxes == [(10.0, 20 / 3, 10.0, 20 / 3)] and "looped" in described
    assert parse_size("854x480") == (854, 480)


@pytest.mark.slow
def test_bench_command_on_the_generated_clip(tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(cli, ["bench", "--arch", "siammask_lite", "--frames", "2", "--warmup", "1", "--size",
                                      "320x240", "--threads", "1", "--precision", "fp32-reference,fp32", "--device",
                                      "cpu", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert "random weights" in report["note"] and report["arch"] == "siammask_lite"
    assert [r["precision"] for r in report["results"]] == ["fp32-reference", "fp32"]
    for r in report["results"]:
        assert set(r["stages"]) == {"crop", "backbone", "heads", "refine", "post", "total"}
        assert r["timed_frames"] == 2 and r["threads"] == 1
        assert r["stages"]["backbone"]["median_ms"] < r["stages"]["total"]["median_ms"]
        assert r["fps"] > 0 and r["flops_per_frame"] > 1e8 and r["fraction_of_gemm"] > 0
    # The reference path recomputes the template-side work every frame: more FLOPs per step.
    assert report["results"][0]["flops_per_frame"] > report["results"][1]["flops_per_frame"]
    assert report["peak_rss_mb"] > 50 and report["objects"] == 1
    assert report["cpu"]["model"] and "avx512_bf16" in report["cpu"] and "amx_bf16" in report["cpu"]
    assert "GFLOP/frame" in result.output and "bf16" in result.output
    # fp32-reference was listed: it is the reference, not timed twice; every figure carries its ratio.
    assert report["reference"]["case"] == "fp32-reference" and not report["reference"]["added"]
    ref, fast = report["results"]
    assert ref["vs_reference"] == 1.0 and fast["vs_reference"] == pytest.approx(fast["fps"] / ref["fps"])
    assert "vs fp32-reference" in result.output


@pytest.mark.slow
def test_bench_adds_the_reference_case_when_not_listed(tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "--arch", "siammask_lite", "--frames", "2", "--warmup", "1", "--size", "320x240", "--threads",
            "1", "--precision", "fp32", "--device", "cpu", "--json", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [r["precision"] for r in report["results"]] == ["fp32", "fp32-reference"]
    assert report["reference"]["added"] and "added by --vs" in result.output
    assert set(report["reference"]["fps"]) == {"1"}
    result = CliRunner().invoke(cli, [*args, "--vs", "none"])
    report = json.loads(out.read_text())
    assert [r["precision"] for r in report["results"]] == ["fp32"] and "reference" not in report


def test_reference_ratios_pair_each_case_with_the_reference_at_its_thread_count():
    def row(precision, threads, fps, lost=False, backend="torch"):
        return {"backend": backend, "precision": precision, "threads": threads, "fps": fps, "lost": lost}

    results = [row("fp32", 1, 30.0), row("fp32", 2, 45.0), row("fp32-reference", 1, 20.0),
               row("fp32-reference", 2, 30.0), row("fp32-reference", 1, 5.0, lost=True), row("int8", 4, 50.0, False,
                                                                                            "onnxruntime")]
    fps = bench.reference_ratios(results, {"backend": "torch", "precision": "fp32-reference"})
    assert fps == {"1": 20.0, "2": 30.0}
    assert [r["vs_reference"] for r in results] == [1.5, 1.5, 1.0, 1.0, 0.25, None]
    two = [{**row("fp32", 1, 30.0), "model": "a"}, {**row("fp32-reference", 1, 20.0), "model": "a"},
           {**row("fp32", 1, 90.0), "model": "b"}, {**row("fp32-reference", 1, 60.0), "model": "b"},
           {**row("fp32", 1, 100.0), "model": "opencv-nano"}]
    assert bench.reference_ratios(two, {"backend": "torch", "precision": "fp32-reference"}) == {"1": 20.0}
    assert [r["vs_reference"] for r in two] == [1.5, 1.0, 1.5, 1.0, 5.0]  # b to its own; the peer to the first


def test_bench_option_errors_are_one_line():
    result = CliRunner().invoke(cli, ["bench", "--precision", "fp32,int8"])
    assert result.exit_code == 2 and "int8" in result.output
    result = CliRunner().invoke(cli, ["bench", "--threads", "two"])
    assert result.exit_code == 2 and "thread" in result.output
