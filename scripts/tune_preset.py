"""Tune a checkpoint's tracking preset on held-back *training* sequences and store it in the checkpoint.

Usage (from the repository root):
    python scripts/tune_preset.py CHECKPOINT --root ../shared/train_data/videos \
        --sequences hike,soccerball,swing [--write]

Grid-searches penalty_k, window_influence, lr and seg_thr for the best mean J (DAVIS protocol:
first and last frames not scored). Never point it at an evaluation set.
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import torch

from siamtrack.eval.davis import region_j
from siamtrack.tracker import Preset, Tracker
from siamtrack.train import datasets as ds
from siamtrack.weights.loading import load_checkpoint, read_checkpoint

GRID = {
    "penalty_k": [0.04, 0.1, 0.2],
    "window_influence": [0.3, 0.4, 0.5],
    "lr": [0.5, 1.0],
    "seg_thr": [0.3, 0.35, 0.45],
}


def score(tracker: Tracker, tracks: list[ds.Track], cache: ds.FrameCache, max_frames: int) -> float:
    values = []
    for track in tracks:
        n = min(len(track.frames), max_frames)
        first = int(track.valid[0])
        tracker.init(cache.frame(track.frames[first]), tuple(track.boxes[first]))
        for i in range(first + 1, n - 1):
            (r,) = tracker.track(cache.frame(track.frames[i]))
            values.append(region_j(cache.mask(track, i) > 0, r.mask))
    return float(np.mean(values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--root", required=True)
    ap.add_argument("--sequences", required=True)
    ap.add_argument("--max-frames", type=int, default=30)
    ap.add_argument("--write", action="store_true", help="store the best preset in the checkpoint")
    args = ap.parse_args()
    torch.set_num_threads(2)
    tracks = ds.davis_tracks(args.root, sequences=args.sequences.split(","))
    cache = ds.FrameCache()
    tracker = Tracker(load_checkpoint(args.checkpoint).model, "lite", device="cpu", precision="fp32")
    results = []
    for values in itertools.product(*GRID.values()):
        preset = Preset("lite", **dict(zip(GRID, values, strict=True)))
        tracker.preset = preset
        results.append((score(tracker, tracks, cache, args.max_frames), preset))
        print(json.dumps({"J": round(results[-1][0], 4), **preset.to_dict()}), flush=True)
    best_j, best = max(results, key=lambda r: r[0])
    print(json.dumps({"best_J": round(best_j, 4), "preset": best.to_dict()}))
    if args.write:
        ckpt = read_checkpoint(args.checkpoint)
        ckpt["preset"] = best.to_dict()
        ckpt["preset_tuning"] = {"J": best_j, "sequences": args.sequences, "grid": GRID}
        torch.save(ckpt, args.checkpoint)


if __name__ == "__main__":
    main()
