"""How close `siamtrack run` (decode, track, draw, encode, write) comes to the bare tracker's speed.

Bare: `Tracker.track` on frames already in memory. Run: the real command on the same video,
as a subprocess; its tracking_fps (tracks.json) covers the whole loop. Also reported: CPU
seconds per frame of both, the run's including its threads and FFmpeg processes, whose
ratio is the fps ratio to expect on a machine whose cores are all busy. Weights are random
(speed does not depend on their values).

    python scripts/pipeline_speed.py --arch siammask_lite --frames 120 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="siammask_lite", choices=["siammask_lite", "siammask_sharp"])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", default="854x480")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in both (1: steady on a shared CPU)")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import torch

    from siamtrack.api import from_checkpoint
    from siamtrack.io.sources import open_source
    from siamtrack.io.synthetic import make_clip
    from siamtrack.models import build_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        gt = make_clip(work / "clip", n_frames=args.frames, size=(w, h), masks=False)
        video = work / "clip" / "clip.mp4"
        frames = [f.image for f in open_source(video)]
        torch.manual_seed(0)
        ckpt = work / "model.pt"
        torch.save({"arch": args.arch, "state_dict": build_model(args.arch).state_dict()}, ckpt)
        common = ["--checkpoint", str(ckpt), "--preset", "davis", "--device", "cpu", "--precision", "fp32"]

        def bare() -> tuple[float, float]:
            tracker = from_checkpoint(ckpt, preset="davis", device="cpu", precision="fp32")
            tracker.init(frames[0], [gt["init_box"]])
            tracker.track(frames[1])  # warm-up
            c, t = self_cpu(), time.perf_counter()
            for f in frames[2:]:
                tracker.track(f)
            n = len(frames) - 2
            return n / (time.perf_counter() - t), (self_cpu() - c) / n

        def run(max_frames: int) -> tuple[float, float]:
            out = work / f"run{max_frames}"
            proc = subprocess.Popen([sys.executable, "-m", "siamtrack.cli", "run", str(video), "--bbox",
                                     ",".join(str(v) for v in gt["init_box"]), *common, "--out", str(out),
                                     "--overwrite", "--quiet", "--max-frames", str(max_frames)],
                                    stdout=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            if status != 0:
                raise SystemExit(f"siamtrack run failed ({status})")
            fps = json.loads((out / "tracks.json").read_text())["meta"]["tracking_fps"]
            return fps, usage.ru_utime + usage.ru_stime  # children: the command and its FFmpeg processes

        start_cpu = min(run(2)[1] for _ in range(2))  # start-up and model loading, subtracted below
        rows = []
        for _ in range(args.repeats):
            bare_fps, bare_cpu = bare()
            run_fps, run_total = run(args.frames)
            run_cpu = (run_total - start_cpu) / (args.frames - 2)
            rows.append({"bare_fps": round(bare_fps, 2), "run_fps": round(run_fps, 2),
                         "fps_ratio": round(run_fps / bare_fps, 3), "bare_cpu_ms": round(1000 * bare_cpu, 1),
                         "run_cpu_ms": round(1000 * run_cpu, 1), "cpu_ratio": round(bare_cpu / run_cpu, 3)})
            print(json.dumps(rows[-1]), flush=True)
    ratios = sorted(r["fps_ratio"] for r in rows)
    print(json.dumps({"arch": args.arch, "size": [w, h], "frames": args.frames, "threads": args.threads,
                      "median_fps_ratio": ratios[len(ratios) // 2]}))


if __name__ == "__main__":
    main()
