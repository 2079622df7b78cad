#!/usr/bin/env python3
"""The CUDA figures of docs/eval.md ("Measuring on a GPU") in one rerunnable command, or its dry run on a CPU.

    PYTHONPATH=. python3 scripts/gpu_check.py --out DIR             # a GPU machine (make bench-gpu)
    PYTHONPATH=. python3 scripts/gpu_check.py --dry-run --out DIR   # the same logic, tiny, on the CPU

Steps, each in its own process under a timeout, in this order:

1. env: GPU, driver and memory (nvidia-smi), torch, CUDA and cuDNN versions, TF32 flags, which
   optional packages import; it also writes the seeded official-layout checkpoint
   (tests/official_weights.py: the official weights cannot be downloaded) and the clip: 150 frames
   of 1920x1080, an MP4 where imageio-ffmpeg imports, else a JPEG folder (then no annotated.mp4);
2. tests: the suite's CUDA tests (tests/test_cuda.py and the CUDA crop test; they skip without one);
3. golden: the official architecture's fp32 free run on the device against the golden trajectories
   (cuDNN's TF32 on, torch's default, and off) and fp16's mask IoU against fp32, teacher-forced.
   Golden data come from shared/golden in the tree (copy ../shared/golden there: only the tree
   reaches a GPU machine) or $SIAMTRACK_SHARED/golden; without them the reference is the CPU's
   fp32 run of the seeded checkpoint on a generated clip (the CPU path is golden-tested);
4. bench: `siamtrack bench` for the official architecture, siammask-lite and the default model
   (once when they are the same) at 1, 4 and 16 objects, fp32, fp16 and bf16 timed interleaved
   with the fp32-reference case bench adds for its ratios (--vs);
5. run: `siamtrack run` end to end on the clip (decode, crop, network, warp-back, writers): fps
   and GPU memory, with the writers and without (the network and decoding alone);
6. batch: `siamtrack batch` of 4 copies of the clip with one worker and with two sharing the GPU.

DIR/gpu_check.json holds every record and is rewritten after each step, so a step that hangs or
fails loses only itself; DIR/gpu_check.log has every step's output and DIR/gpu_check.md the
table for docs/eval.md. No step runs past --budget seconds (default 540, inside a 10-minute
device call; about 6 minutes are expected on an H200): each one's timeout is cut to what is left,
and those with under 20 s left are recorded as not started. Exit code 1 when a step failed or its
outputs lack a field.

--dry-run runs every step on the CPU with tiny sizes (a 160x120 clip of 6 frames, 2 objects,
fp32 and fp32-reference in place of fp16) and checks the same outputs; tests/test_gpu_check.py
runs it, so CI keeps this script working. Needs only what the GPU image holds: python3 with torch,
numpy, opencv-python-headless, click, rich and pillow (pytest for the tests step). Wheels in the
tree's .whl/ (ignored by git; name it in the device call's carry) are installed into the scratch
folder first: imageio-ffmpeg there gives the MP4 clip and annotated.mp4.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MIN_STEP_S = 20.0  # a step is not started with less time than this left in the budget
TESTS = ["tests/test_cuda.py", "tests/test_geometry_torch.py::test_crop_on_cuda_equals_cpu"]
OPTIONAL = ("imageio_ffmpeg", "PIL", "onnxruntime", "pytest", "matplotlib")
# The golden tolerances (tests/test_golden.py): state to 1e-3 px, same argmax cell, mask IoU >= 0.99.
STATE_TOL_PX, MASK_IOU_TOL = 1e-3, 0.99


@dataclass(frozen=True)
class Plan:
    """What the steps run: on the GPU the figures, in the dry run the smallest sizes of the same logic."""

    device: str
    precisions: str  # bench's interleaved cases
    fast: str  # the precision of the run and batch figures
    half: str  # compared with fp32 in the golden step
    objects: tuple[int, ...]
    bench_frames: int
    bench_warmup: int
    size: tuple[int, int]
    clip_frames: int
    runs: tuple[tuple[str, str, bool], ...]  # (model, precision, writers)
    batch_entries: int
    golden_cases: int
    golden_steps: int
    budget_s: float


GPU = Plan(device="cuda", precisions="fp32,fp16,bf16", fast="fp16", half="fp16", objects=(1, 4, 16),
           bench_frames=50, bench_warmup=10, size=(1920, 1080), clip_frames=150,
           runs=(("official", "fp32", True), ("official", "fp16", True), ("default", "fp32", True),
                 ("default", "fp16", True), ("default", "fp16", False)),
           batch_entries=4, golden_cases=5, golden_steps=29, budget_s=540.0)
DRY = Plan(device="cpu", precisions="fp32", fast="fp32", half="fp32-reference", objects=(2,), bench_frames=1,
           bench_warmup=0, size=(160, 120), clip_frames=6,
           runs=(("official", "fp32", True), ("default", "fp32", False)),
           batch_entries=2, golden_cases=1, golden_steps=1, budget_s=300.0)


# Child side: one step, in its own process ------------------------------------------------------


def call_cli(args: list[str]) -> tuple[int, float]:
    """``siamtrack ARGS`` in this process (so that its CUDA memory can be read after): exit code, seconds."""
    from siamtrack.cli import main

    t0 = time.perf_counter()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, time.perf_counter() - t0


def cuda_memory() -> dict[str, float | None]:
    import torch

    if not torch.cuda.is_initialized():
        return {"cuda_max_allocated_mb": None, "cuda_max_reserved_mb": None}
    return {"cuda_max_allocated_mb": torch.cuda.max_memory_allocated() / 2**20,
            "cuda_max_reserved_mb": torch.cuda.max_memory_reserved() / 2**20}


def model_options(work: Path) -> dict[str, list[str]]:
    """The models measured, as the CLI options naming them: the official architecture with the seeded
    checkpoint, siammask-lite and the registry's default (one entry when it is siammask-lite)."""
    from siamtrack import weights

    options = {"official": ["--checkpoint", str(work / "official.pth"), "--preset", "davis"],
               "siammask-lite": ["--model", "siammask-lite"]}
    default = weights.default_name()
    options.setdefault(default, ["--model", default])
    options["default"] = options[default]
    return options


def nvidia_smi(query: str) -> list[list[str]] | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [[v.strip() for v in line.split(",")] for line in out.strip().splitlines()] or None


def importable(module: str) -> bool:
    """Whether ``module`` imports here (a GPU image may lack the optional ones)."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def step_env(plan: Plan, work: Path) -> dict[str, Any]:
    import platform

    import cv2
    import torch

    from siamtrack import __version__, weights
    from siamtrack.bench import cpu_info
    from siamtrack.io import synthetic
    from tests.official_weights import seeded_state_dict, write_checkpoint

    env: dict[str, Any] = {
        "siamtrack": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(), "opencv": cv2.__version__,
        "cpu": cpu_info()["model"], "cores": os.cpu_count(), "default_model": weights.default_name(),
        "optional": {m: importable(m) for m in OPTIONAL},
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, capability=f"{props.major}.{props.minor}", gpu_memory_mb=props.total_memory / 2**20,
                   multiprocessors=props.multi_processor_count, cudnn=torch.backends.cudnn.version())
    smi = nvidia_smi("name,driver_version,memory.total,clocks.max.sm,power.limit")
    if smi:
        env["nvidia_smi"] = dict(zip(("name", "driver", "memory_total_mb", "max_sm_clock_mhz", "power_limit_w"),
                                     smi[0], strict=False))
    env["driver"] = env.get("nvidia_smi", {}).get("driver")
    write_checkpoint(seeded_state_dict(), work / "official.pth")
    w, h = plan.size
    if env["optional"]["imageio_ffmpeg"]:
        gt = synthetic.make_clip(work / "clip", plan.clip_frames, plan.size, masks=False)
        clip, box = work / "clip" / "clip.mp4", gt["init_box"]
    else:  # no FFmpeg: a JPEG folder decodes with OpenCV
        clip = work / "clip" / "frames"
        clip.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(synthetic.frames(plan.clip_frames, plan.size)):
            cv2.imwrite(str(clip / f"{i:05d}.jpg"), frame.image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            if i == 0:
                box = list(frame.box)
    env["clip"] = {"path": str(clip), "size": [w, h], "frames": plan.clip_frames, "box": box,
                   "kind": "mp4" if clip.suffix == ".mp4" else "jpeg folder"}
    (work / "clip.json").write_text(json.dumps(env["clip"]))
    return env


def step_tests(plan: Plan, work: Path) -> dict[str, Any]:
    import xml.etree.ElementTree as ET

    if not importable("pytest"):
        return {"error": "pytest is not installed: the CUDA tests did not run"}
    junit = work / "junit.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *TESTS,
                           f"--junitxml={junit}"], cwd=REPO)
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname')}::{case.get('name')}: {(bad.get('message') or '').splitlines()[0][:200]}"
              for case in suite.iter("testcase") for bad in case if bad.tag in ("failure", "error")]
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {"rc": proc.returncode, **counts, "passed": passed, "failed": failed}


def golden_cases(plan: Plan, work: Path) -> tuple[str, Path, list[dict[str, Any]]]:
    """(reference, checkpoint, cases): each case's preset, frames, first box and per-step reference
    (centre, size, argmax cell id, mask) from the golden data, else from the CPU's fp32 run."""
    from tests.conftest import GOLDEN, GOLDEN_SHA256

    if (GOLDEN / "davis").is_dir():
        import cv2

        from tests.test_golden import CASES, frames, trajectory

        ckpt = work / "golden.pth"
        made = subprocess.run([sys.executable, str(GOLDEN / "make_checkpoint.py"), str(ckpt)], capture_output=True,
                              text=True, check=True).stdout
        if f"sha256 {GOLDEN_SHA256}" not in made:
            raise RuntimeError(f"the golden checkpoint does not hash as recorded: {made}")
        cases = []
        for config, seq in CASES[:plan.golden_cases]:
            traj = trajectory(config, seq)
            steps = traj["steps"][:plan.golden_steps]
            ref = [{"center": s["post"]["target_pos"], "size": s["post"]["target_sz"], "best": s["best_pscore_id"],
                    "pre": (s["pre"]["target_pos"], s["pre"]["target_sz"]),
                    "mask": cv2.imread(str(GOLDEN / config / seq / "masks" / f"{s['frame']:05d}.png"), 0) > 0}
                   for s in steps]
            fr = frames(seq)
            cases.append({"name": f"{config}/{seq}", "preset": config, "init": fr[0], "box": traj["init_box_xywh"],
                          "frames": [fr[s["frame"]] for s in steps], "ref": ref})
        return "golden data (official code, seed-4 checkpoint)", ckpt, cases
    from siamtrack.api import from_checkpoint
    from siamtrack.io import synthetic

    clip = list(synthetic.frames(plan.golden_steps + 1, (640, 360)))
    cpu = from_checkpoint(work / "official.pth", preset="davis", device="cpu", precision="fp32")
    cpu.init(clip[0].image, clip[0].box)
    ref = []
    for frame in clip[1:]:
        pre = (cpu.states[0].center.tolist(), cpu.states[0].size.tolist())
        (result,) = cpu.track(frame.image)
        ref.append({"center": cpu.states[0].center.tolist(), "size": cpu.states[0].size.tolist(),
                    "best": cpu.last_steps[0].best_id, "pre": pre, "mask": result.mask})
    case = {"name": "generated clip", "preset": "davis", "init": clip[0].image, "box": clip[0].box,
            "frames": [f.image for f in clip[1:]], "ref": ref}
    return "the CPU's fp32 run (no golden data here)", work / "official.pth", [case]


def step_golden(plan: Plan, work: Path) -> dict[str, Any]:
    import numpy as np
    import torch

    from siamtrack.api import from_checkpoint
    from siamtrack.eval.davis import region_j

    reference, ckpt, cases = golden_cases(plan, work)
    out: dict[str, Any] = {"reference": reference, "device": plan.device, "half": plan.half, "cases": {}}
    for case in cases:
        row: dict[str, Any] = {}
        fp32, half = (from_checkpoint(ckpt, preset=case["preset"], device=plan.device, precision=p)
                      for p in ("fp32", plan.half))
        for variant, tf32 in (("fp32", True), ("fp32-no-tf32", False)):  # the flag is read at each convolution
            torch.backends.cudnn.allow_tf32 = tf32
            fp32.init(case["init"], case["box"])
            centre, size, ious, argmax = [], [], [], 0
            for frame, ref in zip(case["frames"], case["ref"], strict=True):
                (result,) = fp32.track(frame)
                st = fp32.states[0]
                centre.append(float(np.abs(st.center - ref["center"]).max()))
                size.append(float(np.abs(st.size - ref["size"]).max()))
                argmax += int(fp32.last_steps[0].best_id != ref["best"])
                ious.append(region_j(ref["mask"], result.mask))
            row[variant] = {"max_centre_px": max(centre), "max_size_px": max(size), "argmax_differs": argmax,
                            "min_mask_iou": min(ious), "steps": len(ious),
                            "within_golden": bool(max(centre + size) <= STATE_TOL_PX and not argmax
                                                  and min(ious) >= MASK_IOU_TOL)}
        torch.backends.cudnn.allow_tf32 = True  # torch's default, which the trackers run with
        for t in (fp32, half):
            t.init(case["init"], case["box"])
        ious, dists, cells = [], [], 0
        for frame, ref in zip(case["frames"], case["ref"], strict=True):  # teacher-forced: the reference's state
            results = []
            for t in (fp32, half):
                t.states[0].center = np.array(ref["pre"][0], dtype=np.float64)
                t.states[0].size = np.array(ref["pre"][1], dtype=np.float64)
                results.append(t.track(frame)[0])
            a, b = fp32.last_steps[0], half.last_steps[0]
            cells += int((a.best_row, a.best_col) != (b.best_row, b.best_col))
            ious.append(region_j(results[0].mask, results[1].mask))
            dists.append(float(np.hypot(*(fp32.states[0].center - half.states[0].center))))
        row[plan.half] = {"mean_mask_iou_vs_fp32": float(np.mean(ious)), "min_mask_iou_vs_fp32": min(ious),
                          "median_centre_px_vs_fp32": float(np.median(dists)), "cells_differ": cells,
                          "steps": len(ious), "redecided_in_fp32": getattr(half, "exact_decisions", None)}
        out["cases"][case["name"]] = row
    return out


def step_bench(plan: Plan, work: Path, model: str, objects: int) -> dict[str, Any]:
    path = work / f"bench-{model}-{objects}.json"
    code, seconds = call_cli(["bench", *model_options(work)[model], "--device", plan.device, "--precision",
                              plan.precisions, "--objects", objects, "--frames", plan.bench_frames, "--warmup",
                              plan.bench_warmup, "--json", path])
    report = json.loads(path.read_text()) if path.is_file() else None
    return {"rc": code, "seconds": seconds, "model": model, "objects": objects, "report": report}


def clip_info(work: Path) -> dict[str, Any]:
    return json.loads((work / "clip.json").read_text())


def no_video() -> list[str]:
    """Without imageio-ffmpeg no annotated.mp4 can be written."""
    return [] if importable("imageio_ffmpeg") else ["--no-video"]


def step_run(plan: Plan, work: Path, model: str, precision: str, writers: bool) -> dict[str, Any]:
    clip = clip_info(work)
    out = work / "run" / f"{model}-{precision}-{'writers' if writers else 'bare'}"
    box = ",".join(f"{v:g}" for v in clip["box"])
    code, seconds = call_cli(["run", clip["path"], "--bbox", box, "--out", out, "--overwrite", "--quiet",
                              "--device", plan.device, "--precision", precision, *model_options(work)[model],
                              *(no_video() if writers else ["--no-video", "--no-masks"])])
    record: dict[str, Any] = {"rc": code, "seconds": seconds, "model": model, "precision": precision,
                              "writers": writers, **cuda_memory()}
    if (out / "tracks.json").is_file():
        meta = json.loads((out / "tracks.json").read_text())["meta"]
        record.update(frames=meta["frames"], tracking_fps=meta["tracking_fps"], wall_fps=meta["frames"] / seconds,
                      annotated_mp4=(out / "annotated.mp4").is_file(),
                      mask_pngs=sum(1 for _ in (out / "masks").rglob("*.png")) if (out / "masks").is_dir() else 0,
                      precision_used=meta["precision"], device_used=meta["device"])
    return record


def step_batch(plan: Plan, work: Path, workers: int) -> dict[str, Any]:
    clip = clip_info(work)
    manifest = work / "batch" / "clips.jsonl"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("".join(json.dumps({"source": clip["path"], "bbox": [clip["box"]], "name": f"clip{i}"}) + "\n"
                                for i in range(plan.batch_entries)))
    out = work / "batch" / f"workers{workers}"
    shutil.rmtree(out, ignore_errors=True)  # a rerun in the same --work would skip the entries done
    code, seconds = call_cli(["batch", manifest, "--out", out, "--workers", workers, "--quiet", "--device",
                              plan.device, "--precision", plan.fast, *model_options(work)["default"], *no_video()])
    record: dict[str, Any] = {"rc": code, "seconds": seconds, "workers": workers, "entries": plan.batch_entries}
    if (out / "batch.json").is_file():
        doc = json.loads((out / "batch.json").read_text())
        record.update(fps=doc["fps"], frames=doc["frames"], batch_seconds=doc["seconds"], counts=doc["counts"])
    return record


STEPS = {"env": step_env, "tests": step_tests, "golden": step_golden, "bench": step_bench, "run": step_run,
         "batch": step_batch}


# Checks of each record (the parent's): what must be there for the figures --------------------


def check(kind: str, rec: dict[str, Any], plan: Plan) -> str | None:
    """None when the record holds what its figures need, else what is missing or wrong."""
    if "error" in rec:
        return rec["error"]
    if rec.get("rc", 0) != 0:
        return f"exit code {rec['rc']}"
    if kind == "env":
        missing = [k for k in ("torch", "torch_cuda", "clip", "optional") if k not in rec]
        if plan.device == "cuda" and not rec.get("cuda_available"):
            return "torch sees no CUDA device"
        return f"missing {missing}" if missing else None
    if kind == "tests":
        return f"{len(rec['failed'])} failed: {rec['failed']}" if rec["failed"] or not rec["tests"] else None
    if kind == "golden":
        rows = rec["cases"].values()
        need = ("fp32", "fp32-no-tf32", plan.half)
        return None if rows and all(all(k in r for k in need) for r in rows) else "a case lacks a variant"
    if kind == "bench":
        results = (rec.get("report") or {}).get("results") or []
        wanted = set(plan.precisions.split(","))
        got = {r["precision"] for r in results if r["fps"] > 0 and "median_ms" in r["stages"]["total"]}
        return None if wanted <= got else f"bench timed {sorted(got)}, not {sorted(wanted)}"
    if kind == "run":
        if rec.get("frames") != plan.clip_frames:
            return f"tracked {rec.get('frames')} of {plan.clip_frames} frames"
        return None if rec["tracking_fps"] > 0 and rec["precision_used"] == rec["precision"] else "no fps"
    if kind == "batch":
        done = (rec.get("counts") or {}).get("done")
        return None if done == plan.batch_entries and rec["fps"] > 0 else f"{done} of {plan.batch_entries} done"
    raise ValueError(kind)


# Parent side: the steps in order, under the budget ---------------------------------------------


class GpuSampler:
    """nvidia-smi's memory in use and utilisation twice a second while a step runs (all its processes)."""

    def __init__(self) -> None:
        self.memory: list[float] = []
        self.util: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True) if shutil.which("nvidia-smi") else None

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            rows = nvidia_smi("memory.used,utilization.gpu")
            try:
                memory, util = (float(v) for v in rows[0][:2]) if rows else (None, None)
            except ValueError:  # "[N/A]" on some devices
                continue
            if memory is not None:
                self.memory.append(memory)
                self.util.append(util)

    def __enter__(self) -> GpuSampler:
        if self._thread:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def summary(self) -> dict[str, float | None]:
        return {"smi_peak_memory_mb": max(self.memory, default=None),
                "smi_mean_utilisation": sum(self.util) / len(self.util) if self.util else None}


def bench_models() -> list[str]:
    """The official architecture, siammask-lite, and the default model where it is another one."""
    from siamtrack import weights

    return ["official", "siammask-lite"] + (["default"] if weights.default_name() != "siammask-lite" else [])


def schedule(plan: Plan, models: list[str]) -> list[tuple[str, str, float, dict[str, Any]]]:
    """(label, step, timeout in s, arguments) in order of the issue's list."""
    steps = [("env", "env", 180.0, {}), ("tests", "tests", 180.0, {}), ("golden", "golden", 150.0, {})]
    steps += [(f"bench {m} x{n}", "bench", 120.0, {"model": m, "objects": n}) for m in models for n in plan.objects]
    steps += [(f"run {m} {p}{'' if w else ' bare'}", "run", 120.0, {"model": m, "precision": p, "writers": w})
              for m, p, w in plan.runs]
    steps += [(f"batch workers={n}", "batch", 150.0, {"workers": n}) for n in (1, 2)]
    return steps


def run_step(step: str, args: dict[str, Any], timeout: float, dry: bool, work: Path, log: Any,
             env: dict[str, str]) -> dict[str, Any]:
    """One step in a child process (its own session, killed whole on timeout); its record."""
    record_path = work / "record.json"
    record_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", step, "--work", str(work), "--args",
           json.dumps(args)] + (["--dry-run"] if dry else [])
    t0 = time.perf_counter()
    with GpuSampler() as sampler:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
    rec = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if code is None:
        rec["error"] = f"timed out after {timeout:.0f} s"
    elif code != 0 and "error" not in rec:
        rec["error"] = f"the step's process exited with {code}"
    return {**rec, "step_seconds": time.perf_counter() - t0, **sampler.summary()}


def figures(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The numbers of docs/eval.md's table, from the step records."""
    fig: dict[str, Any] = {"bench": {}, "run": {}, "batch": {}, "golden": {}}
    for s in steps:
        r = s["record"]
        if s["step"] == "bench" and r.get("report"):
            for res in r["report"]["results"]:
                fig["bench"].setdefault(r["model"], {}).setdefault(str(r["objects"]), {})[res["precision"]] = {
                    "fps": res["fps"], "object_fps": res["object_fps"],
                    "track_ms": res["stages"]["total"]["median_ms"],
                    "cuda_max_allocated_mb": r["report"].get("cuda_max_memory_allocated_mb")}
        elif s["step"] == "run" and "tracking_fps" in r:
            fig["run"][s["label"][4:]] = {k: r.get(k) for k in ("tracking_fps", "wall_fps", "cuda_max_allocated_mb",
                                                                 "smi_peak_memory_mb", "annotated_mp4")}
        elif s["step"] == "batch" and "fps" in r:
            fig["batch"][str(r["workers"])] = {"fps": r["fps"], "smi_peak_memory_mb": r.get("smi_peak_memory_mb")}
        elif s["step"] == "golden" and "cases" in r:
            fig["golden"] = {v: all(c[v]["within_golden"] for c in r["cases"].values())
                             for v in ("fp32", "fp32-no-tf32")}
            half = [c[r["half"]]["mean_mask_iou_vs_fp32"] for c in r["cases"].values()]
            fig["golden"][f"{r['half']}_mean_mask_iou_vs_fp32"] = sum(half) / len(half)
    if {"1", "2"} <= set(fig["batch"]):
        fig["batch"]["speedup_2_vs_1"] = fig["batch"]["2"]["fps"] / fig["batch"]["1"]["fps"]
    return fig


def markdown(report: dict[str, Any]) -> str:
    """The table for docs/eval.md: the machine, then one row per figure."""
    env = next((s["record"] for s in report["steps"] if s["step"] == "env"), {})
    fig = report["figures"]
    lines = [f"Device: {env.get('gpu', env.get('cpu'))}; driver {env.get('driver')}; torch {env.get('torch')} "
             f"(CUDA {env.get('torch_cuda')}, cuDNN {env.get('cudnn')}); siamtrack {env.get('siamtrack')}; "
             f"{'dry run' if report['dry_run'] else 'gpu_check.py'}, {report['finished']}", "",
             "| figure | case | value |", "| --- | --- | --- |"]
    for model, by_objects in fig["bench"].items():
        for objects, by_precision in by_objects.items():
            for precision, v in by_precision.items():
                lines.append(f"| bench fps (track ms) | {model}, {objects} object(s), {precision} | "
                             f"{v['fps']:.1f} ({v['track_ms']:.2f} ms) |")
    for label, v in fig["run"].items():
        memory = f"{v['cuda_max_allocated_mb']:.0f} MiB" if v["cuda_max_allocated_mb"] is not None else "-"
        lines.append(f"| run fps, loop / wall (GPU memory) | {label} | {v['tracking_fps']:.1f} / {v['wall_fps']:.1f}"
                     f" ({memory}) |")
    for workers in ("1", "2"):
        if workers in fig["batch"]:
            lines.append(f"| batch frames/s | {workers} worker(s) | {fig['batch'][workers]['fps']:.1f} |")
    for key, value in fig["golden"].items():
        shown = f"{value:.4f}" if isinstance(value, float) else ("yes" if value else "no")
        lines.append(f"| golden | {key if isinstance(value, float) else key + ' within the tolerances'} | {shown} |")
    return "\n".join(lines) + "\n"


def write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    # numpy scalars as numbers (a numpy bool written as the string "False" would read as true)
    tmp.write_text(json.dumps(doc, indent=1, default=lambda v: v.item() if hasattr(v, "item") else str(v)) + "\n")
    os.replace(tmp, path)


def install_carried_wheels(work: Path, env: dict[str, str]) -> list[str]:
    """Wheels carried to the GPU machine in the tree's .whl/ (it has no network), e.g. imageio-ffmpeg for
    the MP4 clip and annotated.mp4: installed into the scratch folder, first on the steps' PYTHONPATH."""
    wheels = sorted(str(w) for w in (REPO / ".whl").glob("*.whl"))
    if wheels:
        site = work / "site"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--target", str(site), *wheels], check=True)
        env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    return [Path(w).name for w in wheels]


def orchestrate(plan: Plan, dry: bool, out: Path, work: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "PYTHONUNBUFFERED": "1"}
    if dry:  # a check of the logic on a shared CPU: one thread a process is faster than oversubscribed cores
        env.setdefault("OMP_NUM_THREADS", "1")
    wheels = install_carried_wheels(work, env)
    if not env.get("SIAMTRACK_SHARED") and (REPO / "shared" / "golden").is_dir():
        env["SIAMTRACK_SHARED"] = str(REPO / "shared")  # the copy that travelled with the tree
    deadline = time.monotonic() + plan.budget_s
    report: dict[str, Any] = {"dry_run": dry, "plan": asdict(plan), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                              time.gmtime()), "carried_wheels": wheels, "steps": []}
    with open(out / "gpu_check.log", "w") as log:
        for label, step, timeout, args in schedule(plan, bench_models()):
            left = deadline - time.monotonic()
            log.write(f"\n===== {label} =====\n")
            log.flush()
            if left < MIN_STEP_S:
                rec = {"error": f"not started: {left:.0f} s of the budget left"}
            else:
                rec = run_step(step, args, min(timeout, left), dry, work, log, env)
            problem = check(step, rec, plan)
            report["steps"].append({"label": label, "step": step, "ok": problem is None, "problem": problem,
                                    "record": rec})
            print(f"{'ok  ' if problem is None else 'FAIL'} {label:32s} {rec.get('step_seconds', 0):6.1f} s"
                  + (f"  {problem}" if problem else ""), flush=True)
            report["figures"] = figures(report["steps"])
            report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            write_json(out / "gpu_check.json", report)
    (out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    failed = [s["label"] for s in report["steps"] if not s["ok"]]
    print(f"{len(report['steps']) - len(failed)} of {len(report['steps'])} steps ok; records in {out}/gpu_check.json")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or "runs/gpu-check",
                        help="Folder of gpu_check.json, .md and .log (default: $OUT, else runs/gpu-check).")
    parser.add_argument("--dry-run", action="store_true", help="The same steps on the CPU, tiny sizes.")
    parser.add_argument("--budget", type=float, default=None, help="Seconds for all steps (default: the plan's).")
    parser.add_argument("--work", default=None, help="Scratch folder (default: a temporary one, removed after).")
    parser.add_argument("--child", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--args", default="{}", help=argparse.SUPPRESS)
    a = parser.parse_args()
    plan = DRY if a.dry_run else GPU
    if a.budget is not None:
        plan = replace(plan, budget_s=a.budget)
    if a.child:
        work = Path(a.work)
        try:
            rec = STEPS[a.child](plan, work, **json.loads(a.args))
        except Exception as exc:  # the record says what broke; the traceback goes to the log
            traceback.print_exc()
            rec = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        write_json(work / "record.json", rec)
        return
    if a.work:
        Path(a.work).mkdir(parents=True, exist_ok=True)
        sys.exit(orchestrate(plan, a.dry_run, Path(a.out), Path(a.work)))
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        sys.exit(orchestrate(plan, a.dry_run, Path(a.out), Path(work)))


if __name__ == "__main__":
    main()
