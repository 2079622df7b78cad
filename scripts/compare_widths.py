"""Speed of siammask-lite's network step per correlation width, and validation J from training logs.

Usage (from the repository root):
    python scripts/compare_widths.py --widths 64,128,256 [--logs 64=runs/w64/train_log.jsonl,...]

Times one track step (search trunk, heads, refine at one cell) in the fp32 inference path, widths
interleaved step by step so machine noise hits them alike; prints a Markdown table. With --logs it
adds the first validation J each run logged at or after --val-step (runs identical but for the width).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from siamtrack.engine import count_track_flops, grad_context, prepare_network
from siamtrack.models import build_model


def val_j(log: Path, step: int) -> float | None:
    for line in log.read_text().splitlines():
        row = json.loads(line)
        if "val_J" in row and row["step"] >= step:
            return float(row["val_J"])
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", default="64,128,256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--logs", default="", help="WIDTH=train_log.jsonl,...")
    ap.add_argument("--val-step", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    widths = [int(w) for w in args.widths.split(",")]
    logs = dict(item.split("=", 1) for item in args.logs.split(",") if item)
    cpu = torch.device("cpu")
    nets, kernels, times = {}, {}, {w: [] for w in widths}
    x = (torch.rand(1, 3, 255, 255) * 255).contiguous(memory_format=torch.channels_last)
    cell = torch.tensor([12])
    with grad_context("fp32"):
        for w in widths:
            nets[w], _ = prepare_network(build_model("siammask_lite", channels=w), cpu, "fp32")
            kernels[w] = nets[w].template(torch.rand(1, 3, 127, 127) * 255)
        for i in range(args.steps + 5):
            for w in widths:
                t0 = time.perf_counter()
                _, _, feats = nets[w].heads(nets[w].backbone(x), kernels[w])
                nets[w].refine(feats, cell, cell)
                if i >= 5:
                    times[w].append(time.perf_counter() - t0)
    print(f"threads {args.threads}, {args.steps} steps, fp32 inference path, widths interleaved\n")
    print("| channels | parameters | GFLOP/step | network step ms (median) | relative | val J |")
    print("|---|---|---|---|---|---|")
    base = statistics.median(times[widths[0]])
    for w in widths:
        med = statistics.median(times[w])
        params = sum(p.numel() for p in build_model("siammask_lite", channels=w).parameters())
        flops = count_track_flops(nets[w], cpu) / 1e9
        j = val_j(Path(logs[str(w)]), args.val_step) if str(w) in logs else None
        print(f"| {w} | {params / 1e6:.2f} M | {flops:.2f} | {med * 1000:.1f} | {med / base:.2f}x | "
              f"{'' if j is None else f'{j:.3f}'} |")


if __name__ == "__main__":
    main()
