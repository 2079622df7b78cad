"""Score checkpoints with a training config's validation (held-back training sequences only).

Usage (from the repository root):
    python scripts/validate.py CHECKPOINT [CHECKPOINT ...] [--config configs/siammask-lite.toml] [--frame-step 3]

Prints, per checkpoint, the tracker's J on every frame of the [val] sequences and the training
losses on the config's fixed validation pairs: the same judges the training loop logs, so a
checkpoint from another run (the first stage, an experiment) is compared on equal terms.
``--frame-step N`` tracks every Nth frame: N times the motion per frame, a fast-motion check.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from siamtrack.models import build_model
from siamtrack.train.loop import RunConfig, validate, validate_pairs
from siamtrack.weights.loading import read_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--config", default="configs/siammask-lite.toml")
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--frame-step", type=int, default=1)
    args = ap.parse_args()
    if args.frame_step < 1:
        ap.error("--frame-step must be 1 or more")
    run = RunConfig.load(args.config)
    run.val.max_frames, run.val.pairs, run.val.frame_step = 0, args.pairs, args.frame_step
    for path in args.checkpoints:
        ck = read_checkpoint(path)
        model = build_model(ck.get("arch", "siammask_lite"), **ck.get("config", {}))
        model.load_state_dict(ck["state_dict"])
        model.float().eval()
        scores = validate(model, run)
        row = {"checkpoint": path, "step": ck.get("step"), "frame_step": run.val.frame_step,
               "val_J": round(float(np.mean(list(scores.values()))), 4),
               "val": {k: round(v, 4) for k, v in scores.items()},
               **{k: round(v, 5) for k, v in validate_pairs(model, run).items()}}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
