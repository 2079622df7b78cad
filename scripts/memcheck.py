"""Peak memory of the `siamtrack run` pipeline over a long video: it must not grow with the length.

A generated clip (siamtrack.io.synthetic) is decoded, "tracked" by the oracle tracker (the
clip's exact ground truth, so 10k frames take minutes, not hours), drawn, encoded to
annotated.mp4 and written as mask PNGs and tracks.jsonl/tracks.json, all through the real
`siamtrack run` command. Peak RSS (VmHWM) is reported at each checkpoint frame.

    python scripts/memcheck.py --frames 10000 --checkpoints 1000,10000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def rss_mb() -> tuple[float, float]:
    """Current and peak resident memory of this process, MB (Linux /proc)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--size", default="320x240", help="WxH of the generated clip")
    parser.add_argument("--checkpoints", default="1000,10000", help="frame counts to report at")
    parser.add_argument("--workdir", default=None, help="keep the clip and outputs here (default: a temp folder)")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    marks = sorted(int(v) for v in args.checkpoints.split(",") if int(v) <= args.frames)

    from siamtrack.cli import main as cli_main
    from siamtrack.commands import _common
    from siamtrack.io.synthetic import OracleTracker, make_clip

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        clip = work / f"clip-{args.frames}-{w}x{h}"
        if not (clip / "groundtruth.json").is_file():
            t0 = time.perf_counter()
            make_clip(clip, n_frames=args.frames, size=(w, h), masks=False)
            print(f"generated {args.frames} frames in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        gt = json.loads((clip / "groundtruth.json").read_text())
        report: list[dict] = []
        baseline = rss_mb()

        class Counting(OracleTracker):
            done = 1  # the first frame is the initialisation

            def track(self, frame, **kw):
                results = super().track(frame, **kw)
                Counting.done += 1
                if Counting.done in marks:
                    rss, peak = rss_mb()
                    report.append({"frames": Counting.done, "rss_mb": round(rss, 1), "peak_rss_mb": round(peak, 1),
                                   "seconds": round(time.perf_counter() - t_run, 1)})
                return results

        _common.make_tracker = lambda *a, **k: Counting(args.frames, (w, h))
        out = work / "run"
        t_run = time.perf_counter()
        cli_main(["run", str(clip / "clip.mp4"), "--bbox", ",".join(str(v) for v in gt["init_box"]), "--out",
                  str(out), "--overwrite", "--quiet"])
        final = rss_mb()  # before reading tracks.json back, which is this script's memory, not the run's
        done = json.loads((out / "tracks.json").read_text())["meta"]["frames"]
    print(json.dumps({"frames": done, "size": [w, h], "rss_before_run_mb": round(baseline[0], 1),
                      "checkpoints": report, "peak_rss_after_finalise_mb": round(final[1], 1)}, indent=1))


if __name__ == "__main__":
    main()
