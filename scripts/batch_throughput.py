"""Throughput of `siamtrack batch` against a loop of `siamtrack run`, on the DAVIS dev sequences.

Builds a manifest of the sequences (each starting from the bounding box of its first-frame
mask), then times, as a user would run them (wall clock of whole commands, model loading and
worker start-up included):

* sequential: one `siamtrack run SEQ --threads 1` after another;
* local: `siamtrack batch --workers W --threads 1`;
* ray: `siamtrack batch --executor ray --workers W --threads 1` (a local Ray instance, started
  and stopped by the command: its start-up is the overhead over local).

It prints frames/s over all entries for each, the speed-up over the sequential loop, and the
mean mask IoU of the Ray and local tracks against the sequential ones (per frame and object 0).
Timings need a quiet machine.

    python scripts/batch_throughput.py                      # ../shared/data/davis, 2 workers
    python scripts/batch_throughput.py --max-frames 5       # a quick functional check
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from siamtrack.eval.davis import region_j
from siamtrack.io.annotations import list_images, mask_box, read_label_mask

REPO = Path(__file__).resolve().parents[1]
DAVIS = REPO.parent / "shared" / "data" / "davis"


def build_manifest(davis: Path, path: Path, max_frames: int | None) -> list[dict]:
    rows = []
    for seq in sorted(p for p in (davis / "JPEGImages" / "480p").iterdir() if p.is_dir()):
        first = list_images(davis / "Annotations" / "480p" / seq.name)[0]
        row = {"source": str(seq), "bbox": [list(mask_box(read_label_mask(first) > 0))], "name": seq.name}
        if max_frames:
            row["max_frames"] = max_frames
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def timed(command: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(command)}\n{proc.stderr}")
    return seconds


def frames_of(folder: Path) -> int:
    return json.loads((folder / "tracks.json").read_text())["meta"]["frames"]


def mean_iou(a: Path, b: Path) -> float:
    return float(np.mean([region_j(cv2.imread(str(png), cv2.IMREAD_GRAYSCALE) > 0,
                                   cv2.imread(str(b / "masks" / "0" / png.name), cv2.IMREAD_GRAYSCALE) > 0)
                          for png in sorted((a / "masks" / "0").iterdir())]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--davis", type=Path, default=DAVIS, help="a DAVIS folder (JPEGImages/480p, Annotations/480p)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default=None, help="registry model (default: the registry's default)")
    parser.add_argument("--max-frames", type=int, default=None, help="frames per sequence (a quick check)")
    parser.add_argument("--no-video", action="store_true", help="skip annotated.mp4 everywhere")
    parser.add_argument("--out", type=Path, default=None, help="where the outputs go (default: a temporary folder)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="batch-throughput-"))
    out.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "siamtrack.cli"]
    common = ["--quiet", "--threads", "1"] + (["--model", args.model] if args.model else []) + \
             (["--no-video"] if args.no_video else [])
    manifest = out / "manifest.jsonl"
    rows = build_manifest(args.davis, manifest, args.max_frames)

    seconds = {"sequential": 0.0}
    for row in rows:
        bbox = ",".join(f"{v:g}" for v in row["bbox"][0])
        limit = ["--max-frames", str(args.max_frames)] if args.max_frames else []
        seconds["sequential"] += timed([*cli, "run", row["source"], "--bbox", bbox, "--out",
                                        str(out / "sequential" / row["name"]), "--overwrite", *limit, *common])
    for label, extra in (("local", []), ("ray", ["--executor", "ray"])):
        target = out / label
        if (target / "batch.json").exists():
            (target / "batch.json").unlink()  # track everything again
        seconds[label] = timed([*cli, "batch", str(manifest), "--out", str(target), "--workers", str(args.workers),
                                *extra, *common])

    frames = sum(frames_of(out / "sequential" / r["name"]) for r in rows)
    for label in ("local", "ray"):
        got = sum(frames_of(out / label / r["name"]) for r in rows)
        if got != frames:
            sys.exit(f"{label} tracked {got} frames, the sequential loop {frames}")
    print(f"{len(rows)} sequences, {frames} frames, {args.workers} workers, 1 torch thread each; outputs in {out}")
    print(f"{'mode':<12}{'wall s':>9}{'frames/s':>10}{'vs sequential':>15}{'mask IoU vs seq':>17}")
    for label, s in seconds.items():
        iou = "" if label == "sequential" else \
            f"{np.mean([mean_iou(out / 'sequential' / r['name'], out / label / r['name']) for r in rows]):.4f}"
        print(f"{label:<12}{s:>9.1f}{frames / s:>10.2f}{seconds['sequential'] / s:>14.2f}x{iou:>17}")
    ray_vs_local = np.mean([mean_iou(out / "local" / r["name"], out / "ray" / r["name"]) for r in rows])
    print(f"ray vs local: mask IoU {ray_vs_local:.4f}; overhead {seconds['ray'] - seconds['local']:+.1f} s "
          f"({seconds['ray'] / seconds['local']:.2f}x the local wall time)")


if __name__ == "__main__":
    main()
