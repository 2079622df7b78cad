"""Ship a trained siammask-lite: fp16 weights in siamtrack/weights/siammask-lite.pt
(package data: every install carries it) and its size/SHA-256 in the registry.

Usage (from the repository root): python scripts/export_lite.py weights/siammask-lite/last.pt
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from siamtrack import weights

REGISTRY = Path(__file__).resolve().parents[1] / "siamtrack" / "weights" / "registry.json"


def main(src: str) -> None:
    dst = Path(__file__).resolve().parents[1] / "siamtrack" / "weights" / "siammask-lite.pt"
    info = weights.export(src, dst, half=True)
    reg = json.loads(REGISTRY.read_text())
    for entry in reg["models"]:
        if entry["name"] == "siammask-lite":
            entry.update(size=info["size"], sha256=info["sha256"])
    REGISTRY.write_text(json.dumps(reg, indent=2) + "\n")
    print(f"{dst}: {info['size']} bytes, sha256 {info['sha256']}")


if __name__ == "__main__":
    main(sys.argv[1])
