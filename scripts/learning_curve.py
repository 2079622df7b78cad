"""Summarise a training log (train_log.jsonl) as a Markdown learning-curve table.

Usage: python scripts/learning_curve.py weights/siammask-lite/train_log.jsonl [--every 500]

Each row averages the logged training losses over the ``every`` steps that end at it and shows
the validation J (held-back sequences) logged at that step, if any.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

KEYS = ("loss", "cls", "loc", "mask", "mask_iou", "pairs_per_s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("log")
    ap.add_argument("--every", type=int, default=500)
    args = ap.parse_args()
    rows = [json.loads(line) for line in Path(args.log).read_text().splitlines() if line.strip()]
    train = [r for r in rows if "loss" in r]
    val = {r["step"]: r for r in rows if "val_J" in r}
    last = max(r["step"] for r in rows)
    print("| steps | phase | " + " | ".join(KEYS) + " | val J |")
    print("|---" * (len(KEYS) + 3) + "|")
    for end in range(args.every, last + args.every, args.every):
        window = [r for r in train if end - args.every < r["step"] <= end]
        if not window:
            continue
        means = [np.mean([r[k] for r in window if k in r]) for k in KEYS]
        v = f"{val[end]['val_J']:.3f}" if end in val else ""
        print(f"| {end - args.every}-{min(end, last)} | {window[-1]['phase']} | "
              + " | ".join(f"{m:.3f}" for m in means) + f" | {v} |")


if __name__ == "__main__":
    main()
