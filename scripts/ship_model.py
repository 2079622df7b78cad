"""Ship a trained model inside the package: its weights as siamtrack/weights/<model>.pt (package
data: every install carries it) and their size/SHA-256 in the registry entry of that name.

Usage (from the repository root):
    python scripts/ship_model.py weights/siammask-lite/best.pt                       # fp16 storage
    python scripts/ship_model.py weights/siammask-nano/best.pt --model siammask-nano --fp32 --registry-preset

``--fp32`` keeps the stored values exact: siammask-nano's box branch is NanoTrack v3's published
weights, which fp16 storage would round (its boxes would no longer be NanoTrack's to the bit).
``--registry-preset`` drops the checkpoint's preset: the registry entry's built-in one applies.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from siamtrack import weights

REGISTRY = Path(__file__).resolve().parents[1] / "siamtrack" / "weights" / "registry.json"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="a training checkpoint (best.pt)")
    ap.add_argument("--model", default="siammask-lite", help="the registry entry it ships as")
    ap.add_argument("--fp32", action="store_true", help="store float32 weights (default: fp16 storage)")
    ap.add_argument("--registry-preset", action="store_true", help="store no preset: the entry's built-in one applies")
    args = ap.parse_args(argv)
    reg = json.loads(REGISTRY.read_text())
    entry = next((e for e in reg["models"] if e["name"] == args.model), None)
    if entry is None or entry.get("url"):
        raise SystemExit(f"{args.model}: no registry entry of a model shipped in the package")
    dst = REGISTRY.parent / entry["file"]
    info = weights.export(args.src, dst, half=not args.fp32, keep_preset=not args.registry_preset)
    entry.update(size=info["size"], sha256=info["sha256"])
    REGISTRY.write_text(json.dumps(reg, indent=2) + "\n")
    print(f"{dst}: {info['size']} bytes, sha256 {info['sha256']}")


if __name__ == "__main__":
    main()
