"""Runs a tracker (or reads existing masks) over a dataset and writes results.json / results.md / a plot."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from siamtrack.errors import SiamtrackError
from siamtrack.eval import boxes as bx
from siamtrack.eval.davis import boundary_f, region_j, statistics
from siamtrack.train.datasets import (
    box_tracks,
    groundtruth_file,
    list_images,
    mask_box,
    parse_polygons,
    read_label_mask,
)


def davis_layout(root: Path, resolution: str = "480p") -> tuple[Path, Path]:
    img, ann = root / "JPEGImages", root / "Annotations"
    if (img / resolution).is_dir():
        img, ann = img / resolution, ann / resolution
    if not img.is_dir() or not ann.is_dir():
        raise SiamtrackError(f"{root}: not a DAVIS folder (no JPEGImages/{resolution} and Annotations/{resolution})")
    return img, ann


def object_masks(label: np.ndarray) -> dict[int, np.ndarray]:
    """Object id -> mask; binary 0/255 (DAVIS-2016) is object 1, palettes give one object per index."""
    values = [int(v) for v in np.unique(label) if v]
    if values == [255] or values == [1]:
        return {1: label > 0}
    return {v: label == v for v in values}


def evaluate_davis(root: str | Path, make_tracker: Callable[[], Any] | None, *, sequences: list[str] | None = None,
                   pred_dir: str | Path | None = None, max_frames: int | None = None,
                   on_sequence: Callable[[str], None] | None = None) -> dict[str, Any]:
    """J and F per object and frame (first and last frames excluded), per sequence and overall."""
    img_root, ann_root = davis_layout(Path(root))
    names = sorted(p.name for p in img_root.iterdir() if p.is_dir())
    if sequences:
        missing = sorted(set(sequences) - set(names))
        if missing:
            raise SiamtrackError(f"sequences not in {root}: {', '.join(missing)}")
        names = [n for n in names if n in set(sequences)]
    tracker = make_tracker() if make_tracker is not None and pred_dir is None else None
    per_seq: dict[str, Any] = {}
    frames_done, seconds = 0, 0.0
    for name in names:
        if on_sequence:
            on_sequence(name)
        frames = list_images(img_root / name)
        if max_frames:
            frames = frames[:max_frames]
        anns = [ann_root / name / (f.stem + ".png") for f in frames]
        gt0 = object_masks(read_label_mask(anns[0]))
        ids = sorted(gt0)
        preds: list[dict[int, np.ndarray]] = []
        if pred_dir is not None:
            for f in frames[1:]:
                path = Path(pred_dir) / name / (f.stem + ".png")
                if not path.is_file():
                    raise SiamtrackError(f"missing prediction {path}")
                label = read_label_mask(path)
                got = object_masks(label)
                preds.append({i: got.get(i, np.zeros(label.shape, bool)) for i in ids})
        else:
            first = cv2.imread(str(frames[0]))
            tracker.init(first, [mask_box(gt0[i]) for i in ids])
            t0 = time.perf_counter()
            for f in frames[1:]:
                results = tracker.track(cv2.imread(str(f)))
                preds.append({ids[r.obj_id]: r.mask for r in results})
            seconds += time.perf_counter() - t0
            frames_done += len(frames) - 1
        objects = {}
        for oid in ids:
            j_vals, f_vals = [], []
            for t in range(1, len(frames) - 1):  # official: skip the first (given) and last frames
                gt = object_masks(read_label_mask(anns[t])).get(oid, np.zeros_like(gt0[oid]))
                pred = preds[t - 1][oid]
                j_vals.append(region_j(gt, pred))
                f_vals.append(boundary_f(gt, pred))
            objects[str(oid)] = {"J": statistics(j_vals), "F": statistics(f_vals),
                                 "J_per_frame": [round(v, 6) for v in j_vals],
                                 "F_per_frame": [round(v, 6) for v in f_vals]}
        per_seq[name] = {"frames": len(frames), "objects": objects}
    all_objects = [o for s in per_seq.values() for o in s["objects"].values()]
    summary = {}
    for m in ("J", "F"):
        for stat in ("mean", "recall", "decay"):
            summary[f"{m}_{stat}"] = float(np.mean([o[m][stat] for o in all_objects])) if all_objects else 0.0
    summary["JF_mean"] = (summary["J_mean"] + summary["F_mean"]) / 2
    if frames_done:
        summary["fps"] = frames_done / seconds
    return {"benchmark": "davis", "summary": summary, "sequences": per_seq}


def evaluate_boxes(root: str | Path, make_tracker: Callable[[], Any], *, restart: bool = False,
                   sequences: list[str] | None = None, max_frames: int | None = None,
                   on_sequence: Callable[[str], None] | None = None) -> dict[str, Any]:
    """One-pass evaluation (success AUC, precision@20) or the VOT restart protocol."""
    tracks = [t for t in box_tracks(root) if not sequences or t.name in sequences]
    if not tracks:
        raise SiamtrackError(f"{root}: no box sequences (<seq>/groundtruth.txt) found")
    tracker = make_tracker()
    per_seq: dict[str, Any] = {}
    all_overlaps, all_errors = [], []
    frames_done, seconds = 0, 0.0
    for track in tracks:
        if on_sequence:
            on_sequence(track.name)
        n = len(track.frames) if not max_frames else min(len(track.frames), max_frames)
        gt_polys, rotated_gt = parse_polygons(groundtruth_file(Path(root) / track.name).read_text())

        def prediction(results, rotated: bool = rotated_gt) -> np.ndarray:
            r = results[0]
            return r.rotated.points if rotated else bx.box_polygon(r.box)

        t0 = time.perf_counter()
        if restart:
            res = bx.vot_restart(
                n, gt_polys,
                init=lambda f, tr=track: tracker.init(cv2.imread(str(tr.frames[f])), [tuple(tr.boxes[f])]),
                step=lambda f, tr=track: prediction(tracker.track(cv2.imread(str(tr.frames[f])))))
            per_seq[track.name] = {"frames": n, **res}
        else:
            tracker.init(cv2.imread(str(track.frames[0])), [tuple(track.boxes[0])])
            overlaps, errors = [], []
            for f in range(1, n):
                poly = prediction(tracker.track(cv2.imread(str(track.frames[f]))))
                overlaps.append(bx.polygon_iou(poly, gt_polys[f]))
                errors.append(bx.center_error(poly, gt_polys[f]))
            all_overlaps += overlaps
            all_errors += errors
            per_seq[track.name] = {"frames": n, **bx.ope_summary(overlaps, errors),
                                   "overlaps": [round(o, 5) for o in overlaps], "errors": [round(e, 3) for e in errors],
                                   "success_curve": [round(v, 5) for v in bx.success_curve(overlaps)]}
        seconds += time.perf_counter() - t0
        frames_done += n - 1
    if restart:
        seqs = list(per_seq.values())
        summary = {"accuracy": float(np.mean([s["accuracy"] for s in seqs])),
                   "robustness": float(np.mean([s["failures"] for s in seqs])),
                   "failures": int(sum(s["failures"] for s in seqs))}
    else:
        summary = {**bx.ope_summary(all_overlaps, all_errors),
                   "success_curve": [round(v, 5) for v in bx.success_curve(all_overlaps)]}
    summary["fps"] = frames_done / seconds if seconds else 0.0
    return {"benchmark": "boxes-restart" if restart else "boxes-ope", "summary": summary, "sequences": per_seq}


def write_results(results: dict[str, Any], out_dir: Path, meta: dict[str, Any]) -> list[Path]:
    """results.json, results.md and (OPE with matplotlib) success.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"meta": meta, **results}
    written = [out_dir / "results.json"]
    written[0].write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    (out_dir / "results.md").write_text(markdown_table(results) + "\n")
    written.append(out_dir / "results.md")
    if results["benchmark"] == "boxes-ope":
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return written
        fig, ax = plt.subplots(figsize=(5, 4))
        curve = results["summary"]["success_curve"]
        ax.plot(bx.THRESHOLDS, curve, label=f"{meta.get('tracker')} [{results['summary']['success_auc']:.3f}]")
        ax.set(xlabel="overlap threshold", ylabel="success rate", title="Success plot (OPE)", xlim=(0, 1), ylim=(0, 1))
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / "success.png", dpi=100)
        plt.close(fig)
        written.append(out_dir / "success.png")
    return written


def summary_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (per sequence, then overall) for tables."""
    bench = results["benchmark"]
    if bench == "davis":
        cols = ["J_mean", "J_recall", "J_decay", "F_mean", "F_recall", "F_decay"]
        rows = []
        for name, seq in results["sequences"].items():
            objs = list(seq["objects"].values())
            rows.append([name] + [f"{np.mean([o[c[0]][c[2:]] for o in objs]):.3f}" for c in cols])
        s = results["summary"]
        rows.append(["**overall**"] + [f"{s[c]:.3f}" for c in cols])
        return ["sequence", *cols], rows
    cols = ["accuracy", "failures"] if bench == "boxes-restart" else ["success_auc", "precision_20"]
    rows = [[name] + [f"{seq[c]:.3f}" if isinstance(seq[c], float) else str(seq[c]) for c in cols]
            for name, seq in results["sequences"].items()]
    s = results["summary"]
    rows.append(["**overall**"] + [f"{s[c if c != 'failures' else 'robustness']:.3f}" for c in cols])
    return ["sequence", *cols], rows


def markdown_table(results: dict[str, Any]) -> str:
    header, rows = summary_rows(results)
    meta = results.get("meta", {})
    lines = [f"# {results['benchmark']}: {meta.get('tracker', '')} {meta.get('model', '')}".rstrip(), "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if "fps" in results["summary"]:
        lines += ["", f"fps: {results['summary']['fps']:.1f}"]
    return "\n".join(lines)
