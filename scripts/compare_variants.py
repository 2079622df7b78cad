"""Speed of siammask-lite's network step per trunk and correlation width.

Usage (from the repository root):
    python scripts/compare_variants.py [--variants lite0:128,lite1:128,lite2:128,lite0:64,lite0:256] [--threads 2]

Times one track step (search trunk, heads, refine at one cell) in the fp32 inference path, the
variants interleaved step by step so machine noise hits them alike; prints a Markdown table with
parameters, GFLOP per step, the median step and the ratio to the first variant. Accuracy of the same
variants at equal steps: scripts/ablation.py.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from siamtrack.backends.engine import count_track_flops, grad_context, prepare_network
from siamtrack.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="lite0:128,lite1:128,lite2:128,lite0:64,lite0:256",
                    help="TRUNK:CHANNELS,...")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    variants = [(t, int(c)) for t, c in (v.split(":") for v in args.variants.split(","))]
    cpu = torch.device("cpu")
    nets, kernels, times = {}, {}, {v: [] for v in variants}
    x = (torch.rand(1, 3, 255, 255) * 255).contiguous(memory_format=torch.channels_last)
    cell = torch.tensor([12])
    with grad_context("fp32"):
        for v in variants:
            nets[v], _ = prepare_network(build_model("siammask_lite", trunk=v[0], channels=v[1]), cpu, "fp32")
            kernels[v] = nets[v].template(torch.rand(1, 3, 127, 127) * 255)
        for i in range(args.steps + 5):
            for v in variants:
                t0 = time.perf_counter()
                _, _, feats = nets[v].heads(nets[v].backbone(x), kernels[v])
                nets[v].refine(feats, cell, cell)
                if i >= 5:
                    times[v].append(time.perf_counter() - t0)
    print(f"threads {args.threads}, {args.steps} steps, fp32 inference path, variants interleaved\n")
    print("| trunk | channels | parameters | GFLOP/step | network step ms (median) | relative |")
    print("|---|---|---|---|---|---|")
    base = statistics.median(times[variants[0]])
    for v in variants:
        med = statistics.median(times[v])
        params = sum(p.numel() for p in build_model("siammask_lite", trunk=v[0], channels=v[1]).parameters())
        flops = count_track_flops(nets[v], cpu) / 1e9
        print(f"| {v[0]} | {v[1]} | {params / 1e6:.2f} M | {flops:.2f} | {med * 1000:.1f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
