"""Timing of the tracker per stage, interleaved across configurations so ratios are fair on a noisy machine."""

from __future__ import annotations

import platform
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

STAGES = ("crop", "backbone", "heads", "refine", "post", "total")


def cpu_info() -> dict[str, Any]:
    """CPU model, core count, clock, SIMD and native bf16 support (from /proc/cpuinfo)."""
    info: dict[str, Any] = {"model": platform.processor() or "unknown", "cores": torch.get_num_threads()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name":
            info["model"] = value.strip()
        elif key == "cpu MHz":
            info["mhz"] = float(value)
        elif key == "flags":
            flags = set(value.split())
    info["avx512f"] = "avx512f" in flags
    info["avx512_bf16"] = "avx512_bf16" in flags
    info["amx_bf16"] = "amx_bf16" in flags
    info["avx2"] = "avx2" in flags
    return info


def peak_gflops(info: dict[str, Any], threads: int, dtype: str) -> tuple[float | None, str]:
    """A nominal peak: threads x clock x FLOPs/cycle of the widest fused multiply-add (stated, not measured)."""
    mhz = info.get("mhz")
    if not mhz:
        return None, "clock unknown"
    if dtype == "bf16" and info.get("amx_bf16"):
        per_cycle, how = 1024, "AMX bf16: 1024 FLOP/cycle/core"
    elif dtype == "bf16" and info.get("avx512_bf16"):
        per_cycle, how = 64, "AVX512-BF16 dot products: 64 FLOP/cycle/core"
    elif info.get("avx512f"):
        per_cycle, how = 32, "AVX-512 FMA: 32 fp32 FLOP/cycle/core (one 512-bit FMA per cycle)"
    elif info.get("avx2"):
        per_cycle, how = 32, "AVX2: 2 x 256-bit FMA = 32 fp32 FLOP/cycle/core"
    else:
        per_cycle, how = 8, "SSE: 8 FLOP/cycle/core"
    return threads * mhz / 1000 * per_cycle, f"{threads} threads x {mhz:.0f} MHz x {how}"


@dataclass
class Case:
    name: str
    tracker: Any
    init_times: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})


def percentile_summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1000
    return {"median_ms": float(np.median(a)), "p10_ms": float(np.percentile(a, 10)),
            "p90_ms": float(np.percentile(a, 90))}


def run_cases(cases: list[Case], frames: list[np.ndarray], boxes: list[tuple[float, ...]], warmup: int) -> None:
    """Init every case, then step them in turn on each frame (interleaved), recording stage times."""
    for case in cases:
        case.tracker.profile = True
        case.tracker.init(frames[0], boxes)
        case.init_times.append(case.tracker.last_timings.get("crop", 0) + case.tracker.last_timings.get("backbone", 0))
    for i, frame in enumerate(frames[1:]):
        for case in cases:
            case.tracker.track(frame)
            if i >= warmup:
                for stage, secs in case.tracker.last_timings.items():
                    case.stages[stage].append(secs)


def report(case: Case, objects: int, flops: int, info: dict[str, Any], threads: int) -> dict[str, Any]:
    stages = {s: percentile_summary(v) for s, v in case.stages.items() if v}
    total = stages["total"]["median_ms"] / 1000
    achieved = flops * objects / total / 1e9
    peak, how = peak_gflops(info, threads, "bf16" if case.tracker.precision in ("bf16", "fp16") else "fp32")
    return {"name": case.name, "precision": case.tracker.precision, "threads": threads, "objects": objects,
            "fps": 1 / total, "object_steps_per_s": objects / total, "stages": stages,
            "init_ms": float(np.median(case.init_times)) * 1000, "gflops_per_frame": flops / 1e9,
            "achieved_gflops": achieved, "peak_gflops": peak, "peak_assumption": how,
            "fraction_of_peak": achieved / peak if peak else None}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
