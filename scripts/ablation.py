"""Short training runs that differ in one factor (trunk, width, data, augmentation), and their table.

Usage (from the repository root):
    python scripts/ablation.py [--only base,lite1,...] [--steps 400] [--batch 8] [--out runs/ablation]
    python scripts/ablation.py --only base,no-coco --seed 7 --out runs/ablation-seed7   # another seed

Every run is the heads stage of configs/siammask-lite-v1.toml from ImageNet (trunk frozen), with the
same seed, pair indices, schedule and validation, changed only where its row says. The judges are the
held-back training sequences (hike, soccerball, swing), never the evaluation data: J of the real
tracker on every frame, and the training losses on 256 fixed pairs of those sequences (steadier).
Runs are resumable and skipped when finished; the Markdown table goes to OUT/table.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import tomllib
from pathlib import Path

BASE = "configs/siammask-lite-v1.toml"
NO_AUG = {"affine": 0.0, "distractor": 0.0, "color": 0.0, "elastic": 0.0, "paste": 0.0, "blur": 0.0,
          "gray": 0.0}
# name -> (what differs, overrides as {section: {key: value}}; "data" replaces the data list)
EXPERIMENTS: dict[str, tuple[str, dict]] = {
    "base": ("Lite0, 128 ch, all augmentations, DAVIS + COCO", {}),
    "lite1": ("trunk EfficientNet-Lite1", {"model": {"trunk": "lite1"}}),
    "lite2": ("trunk EfficientNet-Lite2", {"model": {"trunk": "lite2"}}),
    "no-coco": ("without the COCO stills", {"data": "davis-only"}),
    "no-aug": ("no affine, distractor, elastic, paste, colour, blur, grey", {"augment": NO_AUG}),
    "occluder": ("+ occluders over the target (0.3)", {"augment": {"occluder": 0.3}}),
    "w64": ("width 64", {"model": {"channels": 64}}),
    "w256": ("width 256", {"model": {"channels": 256}}),
    "no-affine": ("without affine warps", {"augment": {"affine": 0.0}}),
    "no-distractor": ("without pasted distractors", {"augment": {"distractor": 0.0}}),
    "no-elastic": ("without elastic warps", {"augment": {"elastic": 0.0}}),
    "no-paste": ("without the target pasted on other frames", {"augment": {"paste": 0.0}}),
    "no-color": ("without colour jitter, blur and grey", {"augment": {"color": 0.0, "blur": 0.0, "gray": 0.0}}),
}


def to_toml(value, key: str = "") -> str:
    """Just enough TOML for the training configs (tables, arrays of tables, scalars, string lists)."""
    def scalar(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return repr(v)

    lines = []
    for section, body in value.items():
        if isinstance(body, list) and body and isinstance(body[0], dict):
            for item in body:
                lines.append(f"[[{section}]]")
                lines += [f"{k} = {scalar(v)}" for k, v in item.items()]
                lines.append("")
        else:
            lines.append(f"[{section}]")
            lines += [f"{k} = {scalar(v)}" for k, v in body.items()]
            lines.append("")
    return "\n".join(lines)


def experiment_config(base: dict, overrides: dict, steps: int, batch: int, seed: int | None = None) -> dict:
    cfg = copy.deepcopy(base)
    if seed is not None:  # other training pairs; validation and its fixed pairs stay the same
        cfg["sampler"]["seed"] = seed
    cfg.pop("augment_stage", None)
    cfg["augment"].update({"elastic": 0.3, "paste": 0.2})  # the v2 recipe's augmentations from step 0
    cfg["train"].update({"steps": steps, "batch_size": batch, "freeze_trunk_until": steps, "warmup_steps": 50,
                         "end_lr": 0.0025, "checkpoint_every": 50, "log_every": 10, "threads": 1})
    cfg["train"].pop("refine_only_from", None)
    cfg["val"].update({"every": steps, "max_frames": 0, "pairs": 256})
    for section, values in overrides.items():
        if section == "data":
            cfg["data"] = [d for d in cfg["data"] if d["type"] == "davis"]
        else:
            cfg[section].update(values)
    return cfg


def summarise(name: str, what: str, log: Path) -> dict:
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_J" in r][-1]
    tail = train[-10:]  # the last 100 steps (one line per 10 steps)
    return {"name": name, "what": what, "loss": sum(r["loss"] for r in tail) / len(tail),
            "train_mask_iou": sum(r["mask_iou"] for r in tail) / len(tail), "val_J": val["val_J"], **val["val"],
            "pair_loss": val["pair_loss"], "pair_mask_iou": val["pair_mask_iou"],
            "pairs_per_s": train[-1]["pairs_per_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(EXPERIMENTS))
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", default="runs/ablation")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--seed", type=int, default=None, help="sampler seed (default: the base recipe's)")
    args = ap.parse_args()

    from siamtrack.train.loop import train

    base = tomllib.loads(Path(BASE).read_text())
    out = Path(args.out)
    results = []
    for name in args.only.split(","):
        what, overrides = EXPERIMENTS[name]
        run_dir = out / name
        run_dir.mkdir(parents=True, exist_ok=True)
        config = run_dir / "config.toml"
        config.write_text(to_toml(experiment_config(base, overrides, args.steps, args.batch, args.seed)))
        log = run_dir / "train_log.jsonl"
        if not (log.is_file() and any('"val_J"' in line for line in log.read_text().splitlines())):
            t0 = time.perf_counter()
            train(config, run_dir, resume=True, precision=args.precision, progress=False)
            print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
        results.append(summarise(name, what, log))

    header = ("| run | differs from base | train loss (last 100 steps) | train mask IoU | pair loss | pair mask IoU "
              "| val J (hike / soccerball / swing) | val J mean |")
    lines = [header, "|" + "---|" * 8]
    for r in results:
        lines.append(f"| {r['name']} | {r['what']} | {r['loss']:.3f} | {r['train_mask_iou']:.3f} | "
                     f"{r['pair_loss']:.3f} | {r['pair_mask_iou']:.3f} | "
                     f"{r['hike']:.3f} / {r['soccerball']:.3f} / {r['swing']:.3f} | {r['val_J']:.3f} |")
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(table)


if __name__ == "__main__":
    main()
