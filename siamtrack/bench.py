"""Timing of the tracker per stage, memory, FLOPs and the fraction of the machine's peak.

``run_benchmark`` times ``init`` and ``track`` after warm-up with the tracker's own stage
timers (``Tracker.profile``) and reports median and 10th/90th percentiles. Several cases
(precisions, thread counts) are stepped in turn on each frame, so that they share the
machine's load and their ratios are fair. The peak FLOP/s
is an estimate from the CPU's description (cores x clock x FLOPs per cycle of its widest
fused multiply-add), stated with its assumptions; a measured matrix-multiply rate on the
same threads is reported beside it as a practical ceiling.

Any tracker with the bench's hooks (``profile``, ``last_timings``, ``flops_per_frame``) is a
case: the OpenCV peers (``siamtrack.eval.baselines``) time their one stage, ``total``, and
count no FLOPs, so they are timed beside siamtrack's models on the same frames.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STAGES = ("crop", "backbone", "heads", "refine", "post", "total")
INIT_STAGES = ("crop", "backbone", "total")

# Dense peak of a few data-centre GPUs (FLOP/s): fp32 on CUDA cores, fp16/bf16 on tensor cores.
GPU_PEAKS: dict[str, dict[str, float]] = {
    "H200": {"fp32": 67e12, "half": 989e12},
    "H100 PCIe": {"fp32": 51e12, "half": 756e12},
    "H100": {"fp32": 67e12, "half": 989e12},
    "A100": {"fp32": 19.5e12, "half": 312e12},
}


def parse_cpu_info(cpuinfo: str, lscpu: str = "") -> dict[str, Any]:
    """CPU model, vendor, family, clock and SIMD / bf16 flags from /proc/cpuinfo and ``lscpu`` text."""
    info: dict[str, Any] = {"model": None, "vendor": None, "family": None, "mhz": None, "mhz_source": None}
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "model name" and info["model"] is None:
            info["model"] = value
        elif key == "vendor_id" and info["vendor"] is None:
            info["vendor"] = value
        elif key == "cpu family" and info["family"] is None and value.isdigit():
            info["family"] = int(value)
        elif key == "cpu MHz" and info["mhz"] is None:
            info["mhz"], info["mhz_source"] = float(value), "/proc/cpuinfo cpu MHz (current or nominal clock)"
        elif key == "flags" and not flags:
            flags = set(value.split())
    for line in lscpu.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "CPU max MHz" and value:
            info["mhz"], info["mhz_source"] = float(value), "lscpu CPU max MHz"
        elif key == "Model name" and info["model"] is None:
            info["model"] = value
    for flag in ("fma", "avx2", "avx512f", "avx512_bf16", "amx_bf16"):
        info[flag] = flag in flags
    info["native_bf16"] = info["avx512_bf16"] or info["amx_bf16"]
    return info


def cpu_info() -> dict[str, Any]:
    """``parse_cpu_info`` of this machine (empty fields where the files or lscpu are missing)."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        text = ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                               env={**os.environ, "LC_ALL": "C"}).stdout
    except (OSError, subprocess.SubprocessError):
        lscpu = ""
    info = parse_cpu_info(text, lscpu)
    info["model"] = info["model"] or platform.processor() or "unknown"
    info["cores_available"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return info


def flops_per_cycle(info: dict[str, Any], half: bool) -> tuple[int, str]:
    """FLOPs per cycle and core of the widest FMA (2 FLOPs per lane), with the assumption in words."""
    amd = info.get("vendor") == "AuthenticAMD"
    if info.get("avx512f"):
        if amd and (info.get("family") or 0) < 26:
            units, why = 1, "AVX-512 on AMD Zen 4: 512-bit FMAs run on two 256-bit units, 1 per cycle"
        else:
            units, why = 2, "AVX-512: 2 FMA units of 16 fp32 lanes assumed (most server cores)"
        fp32 = 32 * units
    elif info.get("avx2") and info.get("fma"):
        fp32, why = 32, "AVX2: 2 FMA units of 8 fp32 lanes"
    else:
        fp32, why = 8, "no FMA: 4-lane SSE multiply + add assumed"
    if not half:
        return fp32, f"{why} = {fp32} fp32 FLOP/cycle/core"
    if info.get("amx_bf16"):
        return 1024, "AMX: 1024 bf16 FLOP/cycle/core"
    if info.get("avx512_bf16"):
        return 2 * fp32, f"{why}; AVX512-BF16 dot products do 2 per fp32 lane = {2 * fp32} bf16 FLOP/cycle/core"
    return fp32, f"{why} = {fp32} FLOP/cycle/core (no native bf16: fp32 rate)"


def peak_flops(info: dict[str, Any], cores: int, half: bool) -> tuple[float | None, str]:
    """Estimated peak FLOP/s of ``cores`` cores, or None with the reason when the clock is unknown."""
    if not info.get("mhz"):
        return None, "clock unknown: no peak estimate"
    per_cycle, why = flops_per_cycle(info, half)
    peak = cores * info["mhz"] * 1e6 * per_cycle
    return peak, (f"{cores} core(s) x {info['mhz']:.0f} MHz ({info['mhz_source']}) x {why}; "
                  "turbo clocks above that make fractions over 1 possible")


def gpu_peak(name: str, half: bool) -> tuple[float | None, str]:
    """Dense peak of a known data-centre GPU from its datasheet, else None."""
    for key, peaks in GPU_PEAKS.items():
        if key in name:
            kind = "half" if half else "fp32"
            return peaks[kind], f"{key} datasheet dense {'fp16/bf16 tensor-core' if half else 'fp32'} peak"
    return None, f"no datasheet peak known for {name}"


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p10, p90 and mean in milliseconds."""
    a = np.asarray(seconds, dtype=np.float64) * 1000
    return {"median_ms": float(np.median(a)), "p10_ms": float(np.percentile(a, 10)),
            "p90_ms": float(np.percentile(a, 90)), "mean_ms": float(a.mean())}


def peak_rss_mb() -> float:
    """Peak resident memory of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def gemm_flops(device: Any, half: bool, size: int = 1536, repeats: int = 4) -> float:
    """Measured FLOP/s of a square matrix multiply (bf16/fp16 when ``half``), a practical ceiling."""
    import torch

    dtype = (torch.float16 if device.type == "cuda" else torch.bfloat16) if half else torch.float32
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    times = []
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / float(np.median(times[1:]))


@dataclass
class Case:
    """One configuration being timed: a tracker (its backend and precision) and a thread count (torch's
    and OpenCV's, set before each step; an onnxruntime tracker was built with its own)."""

    tracker: Any
    threads: int | None = None
    lost: bool = False  # every object is declared lost before each step: times the re-detection search
    init: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in INIT_STAGES})
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    wall: list[float] = field(default_factory=list)

    def use(self) -> None:
        if self.threads is not None:
            from siamtrack.executors import set_threads

            set_threads(self.threads)


def time_cases(cases: Sequence[Case], frames: Sequence[np.ndarray], boxes: list[tuple[float, ...]], *,
               warmup: int, init_repeats: int = 5) -> None:
    """Time ``init`` (repeated on frame 0) and ``track`` of every case, interleaved step by step.

    ``frames[0]`` initialises; the next ``warmup`` frames are tracked untimed, the rest timed.
    Interleaving means a load spike on a shared machine hits every case alike, so their ratios hold.
    """
    if len(frames) < warmup + 2:
        raise ValueError(f"{len(frames)} frames: need 1 to initialise, {warmup} to warm up and 1 to time")
    for case in cases:
        case.tracker.profile = True
    for i in range(init_repeats + 1):
        for case in cases:
            case.use()
            t0 = time.perf_counter()
            case.tracker.init(frames[0], boxes)
            wall = time.perf_counter() - t0
            if i:  # the first init is a warm-up
                timings = case.tracker.last_timings
                for stage in ("crop", "backbone"):
                    if stage in timings:
                        case.init[stage].append(timings[stage])
                case.init["total"].append(wall)
    for i, frame in enumerate(frames[1:]):
        for case in cases:
            case.use()
            if case.lost:
                for obj_id in range(len(boxes)):
                    case.tracker.mark_lost(obj_id)
            t0 = time.perf_counter()
            case.tracker.track(frame)
            elapsed = time.perf_counter() - t0
            if i < warmup:
                continue
            case.wall.append(elapsed)
            for stage, seconds in case.tracker.last_timings.items():
                case.stages.setdefault(stage, []).append(seconds)
    for case in cases:
        case.tracker.profile = False


def case_report(case: Case, objects: int) -> dict[str, Any]:
    """Percentiles per stage, fps and the compute figures of one timed case (FLOP figures None for a
    tracker that does not count its FLOPs)."""
    import torch

    from siamtrack.eval.harness import tracker_meta

    tracker = case.tracker
    case.use()
    threads = getattr(tracker, "threads", None) or torch.get_num_threads()
    timed, seconds = len(case.wall), float(np.sum(case.wall))
    counted = tracker.flops_per_frame()
    flops = None if counted is None else int(counted) * objects
    median_total = float(np.median(case.stages["total"]))
    achieved = None if flops is None else flops / median_total
    half = tracker.precision in ("bf16", "fp16")
    device = torch.device(str(tracker.device))
    if device.type == "cuda":
        peak, assumption = gpu_peak(torch.cuda.get_device_name(device), half)
        cores = None
    else:
        info = cpu_info()
        cores = min(threads, info["cores_available"] or threads)
        peak, assumption = peak_flops(info, cores, half)
        if tracker.precision == "int8":
            assumption += "; int8 operations are counted against this fp32 peak"
    return {
        "tracker": tracker_meta(tracker)["tracker"], "model": tracker.model_name,
        "backend": getattr(tracker, "backend", "torch"), "precision": tracker.precision, "threads": threads,
        "cores_used": cores, "lost": case.lost,
        "init": {s: percentiles(v) for s, v in case.init.items() if v},
        "stages": {s: percentiles(v) for s, v in case.stages.items() if v},
        "wall": percentiles(case.wall), "timed_frames": timed,
        "fps": timed / seconds, "fps_median": 1 / float(np.median(case.wall)), "object_fps": objects * timed / seconds,
        "flops_per_frame": flops, "gflops_per_frame": None if flops is None else flops / 1e9,
        "achieved_gflops": None if achieved is None else achieved / 1e9,
        "peak_gflops": peak / 1e9 if peak else None, "peak_assumption": assumption,
        "fraction_of_peak": achieved / peak if peak and achieved is not None else None,
    }


def run_benchmark(cases: Sequence[Case], frames: Sequence[np.ndarray], boxes: list[tuple[float, ...]], *,
                  warmup: int, gemm: bool = True) -> dict[str, Any]:
    """Every case timed (interleaved) and reported, with the process's peak memory."""
    import torch

    devices = {torch.device(str(c.tracker.device)) for c in cases}
    cuda = [d for d in devices if d.type == "cuda"]
    for d in cuda:
        torch.cuda.reset_peak_memory_stats(d)
    time_cases(cases, frames, boxes, warmup=warmup)
    out: dict[str, Any] = {"peak_rss_mb": peak_rss_mb()}
    if cuda:
        out["cuda_max_memory_allocated_mb"] = max(torch.cuda.max_memory_allocated(d) for d in cuda) / 2**20
    results = [case_report(c, len(boxes)) for c in cases]
    if gemm:
        measured: dict[tuple, float] = {}
        for case, r in zip(cases, results, strict=True):
            if r["achieved_gflops"] is None:
                continue
            case.use()
            key = (str(case.tracker.device), r["threads"], r["precision"] in ("bf16", "fp16"))
            if key not in measured:
                measured[key] = gemm_flops(torch.device(key[0]), key[2])
            r["gemm_gflops"] = measured[key] / 1e9
            r["fraction_of_gemm"] = r["achieved_gflops"] * 1e9 / measured[key]
    base = results[0]["stages"]["total"]["median_ms"]
    for r in results:
        r["speedup_vs_first"] = base / r["stages"]["total"]["median_ms"]
    out["results"] = results
    return out


def reference_ratios(results: list[dict[str, Any]], reference: dict[str, Any]) -> dict[str, float]:
    """Each result's ``vs_reference``: its fps over the fps of the result that matches ``reference``
    (backend, precision, not lost) at the same thread count; returns the reference fps per thread count.

    Absolute fps differ 1.5x between the machines this project meets; a ratio to a case timed in
    the same run, interleaved with it, reads the same on each of them.
    With several models the reference is each model's own; the OpenCV trackers' is the first model's.
    """
    matching = [r for r in results if not r["lost"] and all(r[k] == v for k, v in reference.items())]
    own = {(r.get("model"), r["threads"]): r["fps"] for r in matching}
    refs = {}
    for r in matching:
        refs.setdefault(r["threads"], r["fps"])
    for r in results:
        ref = own.get((r.get("model"), r["threads"]), refs.get(r["threads"]))
        r["vs_reference"] = r["fps"] / ref if ref else None
    return {str(t): fps for t, fps in refs.items()}
