"""The mask branch with perfect localisation: J of a model's masks when every search crop is centred
on the ground-truth box and the mask is refined at the crop's central cell, beside the J it tracks.

Usage (from the repository root):
    python scripts/oracle_masks.py ROOT --model siammask-nano [--model siammask-lite] [--sequences a,b]

ROOT is a DAVIS folder (JPEGImages/480p, Annotations/480p: the dev set, to report) or a folder of
sequences with their own JPEGImages and Annotations (``shared/train_data/videos``). Per sequence
and model it prints three J means over frames 1..n-2 (the DAVIS protocol):
``tracked`` (the normal tracker), ``oracle`` (crop and scale from this frame's ground-truth box,
template from the first frame as usual) and ``box`` (the ground-truth box filled, for scale). The
gap between tracked and oracle is what localisation costs the masks; the gap between oracle and 1
is what the mask branch itself misses. Nothing here tunes anything.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

import siamtrack
from siamtrack import geometry as geo
from siamtrack.eval.davis import region_j
from siamtrack.io.annotations import mask_box
from siamtrack.results import frame_outputs


def oracle_mask(tracker, frame: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The mask of one step whose crop is centred on ``box`` at its scale, refined at the central cell."""
    st = tracker.states[0]
    st.center = np.array([box[0] + box[2] / 2, box[1] + box[3] / 2])
    st.size = np.array([box[2], box[3]])
    side = tracker.style.search_side(st.size, tracker.preset.context_amount)
    picks, _, _, search = tracker._score(frame, [0], [st.center], [side], [st.size])
    _, rows, cols = tracker.decoder.shape
    centre = (rows // 2, cols // 2)
    pick = (*picks[0][:7], centre)
    (mask127,) = tracker.scorer.masks(search, [pick], [0])
    window = tracker.decoder.mask_window(geo.crop_box(st.center, side), *centre)
    wh = (frame.shape[1], frame.shape[0])
    binary, *_ = frame_outputs(mask127, window, (st.center, st.size), wh, tracker.preset.seg_thr,
                               tracker.style.mask_pad)
    return binary


def sequence_scores(model: str, folder: Path, labels: Path) -> dict[str, float]:
    frames = sorted(folder.glob("*.jpg"))
    gts = [cv2.imread(str(labels / (f.stem + ".png")), cv2.IMREAD_GRAYSCALE) > 0 for f in frames]
    images = [cv2.imread(str(f)) for f in frames]
    scores: dict[str, list[float]] = {"tracked": [], "oracle": [], "box": []}
    tracked = siamtrack.from_pretrained(model, device="cpu", precision="fp32")
    oracle = siamtrack.from_pretrained(model, device="cpu", precision="fp32")
    first = mask_box(gts[0])
    tracked.init(images[0], first)
    oracle.init(images[0], first)
    for t in range(1, len(images)):
        (result,) = tracked.track(images[t])
        if t == len(images) - 1:
            break
        scores["tracked"].append(region_j(gts[t], result.mask))
        box = mask_box(gts[t])
        if box is None:  # the object is out of view: an empty mask is right, as DAVIS scores it
            scores["oracle"].append(region_j(gts[t], np.zeros_like(gts[t])))
            scores["box"].append(region_j(gts[t], np.zeros_like(gts[t])))
            continue
        scores["oracle"].append(region_j(gts[t], oracle_mask(oracle, images[t], box)))
        scores["box"].append(region_j(gts[t], geo.box_mask(gts[t].shape, box)))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--sequences", default=None)
    args = ap.parse_args()
    davis = (args.root / "JPEGImages" / "480p").is_dir()
    images = args.root / "JPEGImages" / "480p" if davis else args.root
    names = args.sequences.split(",") if args.sequences else sorted(p.name for p in images.iterdir() if p.is_dir())

    def folders(name: str) -> tuple[Path, Path]:
        if davis:
            return images / name, args.root / "Annotations" / "480p" / name
        return args.root / name / "JPEGImages", args.root / name / "Annotations"

    for model in args.model:
        table = {name: sequence_scores(model, *folders(name)) for name in names}
        for name, s in table.items():
            print(f"{model:14s} {name:18s} tracked {s['tracked']:.3f} oracle {s['oracle']:.3f} box {s['box']:.3f}")
        means = {k: np.mean([s[k] for s in table.values()]) for k in ("tracked", "oracle", "box")}
        print(f"{model:14s} {'mean':18s} tracked {means['tracked']:.3f} oracle {means['oracle']:.3f} "
              f"box {means['box']:.3f}", flush=True)


if __name__ == "__main__":
    main()
