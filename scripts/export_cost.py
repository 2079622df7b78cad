"""What a training-set export adds to `siamtrack run --no-video` over the same frames.

Two measures. Whole commands: `run --no-video` and `run --no-video --export FORMAT` as
subprocesses, alternated, each repeated; wall seconds and CPU seconds (the process, its threads
and children). Export work alone: `run --no-video --export FORMAT` in this process with the
dataset sink's `add` timed on its writer thread (CPU time of that thread: RLE, polygons, label
files and, unless `--frames none`, the frame images), which contention on a busy machine does
not inflate. Reported as shares of `run --no-video`'s CPU time and loop time (tracks.json's
tracking_fps) per frame, and as the extra wall, CPU and loop time of the whole command.

    python scripts/export_cost.py SOURCE --bbox X,Y,W,H --format coco --repeats 3
    python scripts/export_cost.py SOURCE --bbox X,Y,W,H --format yolo --frames none
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def command(source: str, bbox: str, out: Path, extra: list[str], max_frames: int | None) -> list[str]:
    limit = ["--max-frames", str(max_frames)] if max_frames else []
    return [sys.executable, "-m", "siamtrack.cli", "run", source, "--bbox", bbox, "--out", str(out), "--overwrite",
            "--no-video", "--quiet", "--device", "cpu", *limit, *extra]


def timed(cmd: list[str], out: Path) -> tuple[float, float, float]:
    """Wall and CPU seconds of the command, and its loop's seconds per frame (tracks.json)."""
    cpu0, t0 = children_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    return wall, cpu, 1.0 / json.loads((out / "tracks.json").read_text())["meta"]["tracking_fps"]


def export_work(source: str, bbox: str, out: Path, extra: list[str], max_frames: int | None) -> dict[str, float]:
    """CPU seconds the dataset sink spends per frame on its thread, timed in this process."""
    from siamtrack.cli import main
    from siamtrack.io.labels import LabelSink

    spent: list[float] = []
    real = LabelSink.add

    def add(self, index, image, results):  # noqa: ANN001 - a timing wrapper
        t0 = time.thread_time()
        real(self, index, image, results)
        spent.append(time.thread_time() - t0)

    LabelSink.add = add  # type: ignore[method-assign]
    try:
        main(command(source, bbox, out, extra, max_frames)[3:])
    finally:
        LabelSink.add = real  # type: ignore[method-assign]
    return {"frames": len(spent), "ms_per_frame": 1000 * statistics.mean(spent), "ms_max": 1000 * max(spent)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("--bbox", required=True)
    parser.add_argument("--format", default="coco")
    parser.add_argument("--frames", default=None, choices=["jpg", "png", "none"])
    parser.add_argument("--polygons", action="store_true")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    export = ["--export", args.format] + (["--frames", args.frames] if args.frames else []) + (
        ["--polygons"] if args.polygons else [])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        runs: dict[str, list[tuple[float, float, float]]] = {"run --no-video": [], "with export": []}
        timed(command(args.source, args.bbox, out, [], args.max_frames), out)  # warm the caches
        for _ in range(args.repeats):
            runs["run --no-video"].append(timed(command(args.source, args.bbox, out, [], args.max_frames), out))
            runs["with export"].append(timed(command(args.source, args.bbox, out, export, args.max_frames), out))
        frames = json.loads((out / "tracks.json").read_text())["meta"]["frames"]
        work = export_work(args.source, args.bbox, Path(tmp) / "work", export, args.max_frames)
    report: dict[str, object] = {"format": args.format, "options": export, "frames": frames}
    for name, rows in runs.items():
        report[name] = {"wall_s": round(statistics.median(r[0] for r in rows), 3),
                        "cpu_s": round(statistics.median(r[1] for r in rows), 3),
                        "loop_ms_per_frame": round(1000 * statistics.median(r[2] for r in rows), 2)}
    base, full = report["run --no-video"], report["with export"]
    base_cpu_ms = 1000 * base["cpu_s"] / frames  # type: ignore[index]
    report["export_thread_ms_per_frame"] = round(work["ms_per_frame"], 3)
    report["export_share_of_run_cpu"] = round(work["ms_per_frame"] / base_cpu_ms, 4)
    report["export_share_of_run_loop"] = round(work["ms_per_frame"] / base["loop_ms_per_frame"], 4)  # type: ignore[index]
    report["loop_extra"] = round(full["loop_ms_per_frame"] / base["loop_ms_per_frame"] - 1, 4)  # type: ignore[index]
    report["wall_extra"] = round(full["wall_s"] / base["wall_s"] - 1, 4)  # type: ignore[index]
    report["cpu_extra"] = round(full["cpu_s"] / base["cpu_s"] - 1, 4)  # type: ignore[index]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
