"""Runs a tracker (or reads existing masks) over a dataset and writes results.json / results.md / success.png.

Any ``siamtrack.tracker.ObjectTracker`` works: ``init(frame, boxes)`` and ``track(frame)``
returning ``TrackResult`` s in id order (the SiamMask ``Tracker``, the OpenCV baselines,
a test's fake). Scores go through the pure functions of ``davis`` and ``boxes``.

Sequences are independent: each is one task for a ``siamtrack.executors`` executor (in this
process by default; worker processes or Ray with ``--workers``). Everything a sequence needs
is checked before any is tracked, and the results are assembled in sequence order, so an
evaluation on several workers writes the same scores as one in this process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from siamtrack import __version__
from siamtrack.atomic import write_text_atomic
from siamtrack.errors import SiamtrackError
from siamtrack.eval import boxes as bx
from siamtrack.eval import davis as dv
from siamtrack.io.annotations import groundtruth_file, list_images, mask_box, parse_polygons, read_label_mask
from siamtrack.io.sinks import write_label_png
from siamtrack.io.sources import read_image

if TYPE_CHECKING:
    from siamtrack.executors import Executor
    from siamtrack.results import ObjectTracker, TrackResult

JF_COLUMNS = ("J_mean", "J_recall", "J_decay", "F_mean", "F_recall", "F_decay", "JF_mean")
DAVIS_COLUMNS = (*JF_COLUMNS, "box_auc")
OPE_COLUMNS = ("success_auc", "precision_20")
RESTART_COLUMNS = ("accuracy", "failures")


class _Clock:
    """Seconds spent inside tracker calls, for an fps that excludes disk reads and scoring.

    ``stopped`` (an executor's) is looked at before each frame: a worker asked to stop (the
    parent was interrupted) ends its sequence there.
    """

    def __init__(self, stopped: Callable[[], bool] = lambda: False) -> None:
        self.seconds = 0.0
        self.frames = 0
        self.stopped = stopped

    def add(self, part: tuple[int, float]) -> None:
        """Frames and seconds of another clock (a worker's)."""
        self.frames += part[0]
        self.seconds += part[1]

    @property
    def part(self) -> tuple[int, float]:
        return self.frames, self.seconds

    def track(self, tracker: ObjectTracker, frame: np.ndarray) -> list[TrackResult]:
        if self.stopped():
            raise KeyboardInterrupt
        t0 = time.perf_counter()
        out = tracker.track(frame)
        self.seconds += time.perf_counter() - t0
        self.frames += 1
        return out

    def meta(self) -> dict[str, Any]:
        fps = self.frames / self.seconds if self.seconds > 0 else None
        return {"tracked_frames": self.frames, "track_seconds": self.seconds, "fps": fps}


def _select(names: list[str], wanted: list[str] | None, where: Path) -> list[str]:
    if not wanted:
        return names
    missing = [n for n in wanted if n not in names]
    if missing:
        raise SiamtrackError(f"sequences not found in {where}: {', '.join(missing)}")
    return [n for n in names if n in wanted]


# DAVIS ----------------------------------------------------------------------------------------


def davis_layout(root: Path, resolution: str = "480p") -> tuple[Path, Path]:
    """``JPEGImages/<res>`` and ``Annotations/<res>`` (or the two folders without a resolution level)."""
    img, ann = root / "JPEGImages", root / "Annotations"
    if (img / resolution).is_dir():
        img, ann = img / resolution, ann / resolution
    if not img.is_dir() or not ann.is_dir():
        raise SiamtrackError(f"{root} is not a DAVIS folder (no JPEGImages/{resolution} and Annotations/{resolution})")
    return img, ann


def split_sequences(root: str | Path, split: str) -> list[str]:
    """Sequence names of a DAVIS split file: ``ImageSets/{2016,2017,480p}/<split>.txt``.

    DAVIS-2017 lists one name per line; the DAVIS-2016 package lists frame paths
    (``/JPEGImages/480p/<seq>/00000.jpg /Annotations/...``), one line per frame.
    """
    root = Path(root)
    candidates = [root / "ImageSets" / d / f"{split}.txt" for d in ("2016", "2017", "480p")]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise SiamtrackError(f"no {split}.txt in {root / 'ImageSets'} (2016/, 2017/ or 480p/)")
    names: list[str] = []
    for line in path.read_text().splitlines():
        first = line.strip().split(" ")[0]
        if not first:
            continue
        name = Path(first).parent.name if "/" in first else first
        if name not in names:
            names.append(name)
    return names


def fuse_results(results: list, shape: tuple[int, int], ids: list[int]) -> np.ndarray:
    """One label image (object ids) from per-object results, as the official SiamMask DAVIS test.

    Each pixel goes to the object with the highest mask probability, if any object's mask
    covers it (their probability exceeds the segmentation threshold).
    """
    label = np.zeros(shape, dtype=np.uint8)
    if not results:
        return label
    masks = np.stack([r.mask for r in results])
    covered = masks.any(axis=0)
    if len(results) == 1:
        label[covered] = ids[0]
        return label
    probs = np.stack([r.mask_prob for r in results])
    label[covered] = np.asarray(ids, dtype=np.uint8)[np.argmax(probs, axis=0)[covered]]
    return label


def pred_objects(label: np.ndarray, n_objects: int, path: Path) -> dict[int, np.ndarray]:
    """Object masks of a predicted label image (binary 0/255 = object 1, or palette ids)."""
    if dv.is_binary_label(label):
        return {1: label > 0}
    top = int(label.max()) if label.size else 0
    if top > n_objects:
        raise SiamtrackError(f"{path} has object index {top} but the ground truth has {n_objects} object(s)")
    return {i: label == i for i in range(1, n_objects + 1)}


_TaskResult = tuple[dict[str, Any], tuple[int, float], dict[str, Any]]  # scores, (frames, seconds), tracker meta


@dataclass(frozen=True)
class _Sequence:
    """One sequence as a task for an executor: DAVIS frames and annotations, or box ground truth."""

    name: str
    frames: list[Path]
    anns: list[Path] | None = None  # DAVIS
    save_masks: str | Path | None = None  # DAVIS
    polys: np.ndarray | None = None  # boxes: (N, 4, 2)
    rotated: bool = False  # boxes
    restart: bool = False  # boxes


def _track_sequences(task: Callable, items: Sequence[_Sequence], tracker: ObjectTracker | None,
                     executor: Executor | None,
                     on_sequence: Callable[[str, int], None] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every item through ``task`` on the executor (or in this process with ``tracker``):
    the per-sequence results in the items' order, and the tracker and speed metadata."""
    from siamtrack.executors import InlineExecutor

    runner = executor if executor is not None else InlineExecutor(tracker)
    done: dict[int, Any] = {}
    clock = _Clock()
    meta: dict[str, Any] = {}
    for index, (result, part, about) in runner.map(task, items):
        done[index] = result
        clock.add(part)
        meta = about
        if on_sequence:
            on_sequence(items[index].name, len(items[index].frames))
    return {items[i].name: done[i] for i in range(len(items))}, {**meta, **clock.meta()}


def evaluate_davis(root: str | Path, tracker: ObjectTracker | None = None, *, pred_dir: str | Path | None = None,
                   sequences: list[str] | None = None, max_frames: int | None = None,
                   save_masks: str | Path | None = None, resolution: str = "480p",
                   on_sequence: Callable[[str, int], None] | None = None,
                   executor: Executor | None = None) -> dict[str, Any]:
    """J and F per object (frames 1..N-2 scored), per sequence and overall.

    With ``tracker`` (or ``executor``, whose workers have their own), each sequence is
    initialised from the bounding boxes of its first-frame masks and tracked; with
    ``pred_dir`` (``<pred>/<seq>/<frame>.png``) existing masks are scored. ``on_sequence``
    hears of each sequence as it is scored.
    """
    if (tracker is None and executor is None) == (pred_dir is None):
        raise ValueError("give a tracker (or an executor) or a prediction folder")
    root = Path(root)
    img_root, ann_root = davis_layout(root, resolution)
    names = sorted(p.name for p in img_root.iterdir() if p.is_dir() and (ann_root / p.name).is_dir())
    names = _select(names, sequences, img_root)
    if not names:
        raise SiamtrackError(f"{root}: no sequence has both images and annotations")
    items = []
    for name in names:
        frames = list_images(img_root / name)[:max_frames]
        if len(frames) < 3:
            raise SiamtrackError(f"{name}: {len(frames)} frame(s); DAVIS scoring needs at least 3")
        anns = [ann_root / name / f"{f.stem}.png" for f in frames]
        missing = [a.name for a in anns if not a.is_file()]
        if missing:
            raise SiamtrackError(f"{name}: no annotation for frame(s) {', '.join(missing[:3])}")
        # absolute paths: a worker (a Ray actor above all) need not share this process's folder
        items.append(_Sequence(name, [f.absolute() for f in frames], [a.absolute() for a in anns],
                               None if save_masks is None else Path(save_masks).absolute()))
    if pred_dir is None:
        per_seq, tracked = _track_sequences(_davis_task, items, tracker, executor, on_sequence)
    else:
        per_seq = {}
        for item in items:
            per_seq[item.name] = _davis_sequence(item.name, item.frames, item.anns, None, pred_dir, None, _Clock())
            if on_sequence:
                on_sequence(item.name, len(item.frames))
    objects = [o for s in per_seq.values() for o in s["objects"].values()]
    summary = _davis_means(objects)
    box_curve = np.mean([o["box_success_curve"] for o in objects], axis=0)
    summary.update(box_auc=float(box_curve.mean()), box_success_curve=box_curve.tolist(),
                   sequences=len(per_seq), objects=len(objects),
                   scored_frames=sum(s["scored_frames"] for s in per_seq.values()),
                   success_curve=np.mean([bx.success_curve(o["J_per_frame"]) for o in objects], axis=0).tolist())
    meta = {"benchmark": "davis", "root": str(root), "resolution": resolution, "max_frames": max_frames,
            "protocol": "semi-supervised: initialised with the bounding box of each first-frame mask; "
                        "frames 1..N-2 scored (first and last left out, as the official DAVIS code); "
                        "box AUC: OTB success AUC of the tracker's boxes against each ground-truth "
                        "mask's bounding box, averaged over objects",
            "bound_th": dv.BOUND_TH}
    if pred_dir is None:
        meta.update(tracked)
    else:
        meta.update(tracker="pred", pred=str(pred_dir))
    return {"benchmark": "davis", "meta": meta, "summary": summary, "sequences": per_seq}


def _davis_task(tracker: ObjectTracker, item: _Sequence, stopped: Callable[[], bool]) -> _TaskResult:
    clock = _Clock(stopped)
    result = _davis_sequence(item.name, item.frames, item.anns, tracker, None, item.save_masks, clock)
    return result, clock.part, tracker_meta(tracker)


def _davis_means(objects: list[dict[str, Any]]) -> dict[str, float]:
    out = {f"{m}_{s}": float(np.mean([o[m][s] for o in objects])) for m in "JF" for s in ("mean", "recall", "decay")}
    out["JF_mean"] = (out["J_mean"] + out["F_mean"]) / 2
    return {k: out[k] for k in JF_COLUMNS}


def _box_polygon(box: Sequence[float] | None) -> np.ndarray | None:
    return None if box is None else bx.box_polygon(box)


def _davis_sequence(name: str, frames: list[Path], anns: list[Path], tracker: ObjectTracker | None,
                    pred_dir: str | Path | None, save_masks: str | Path | None, clock: _Clock) -> dict[str, Any]:
    first = read_label_mask(anns[0])
    binary = dv.is_binary_label(first)
    ids = dv.label_object_ids(first)
    if not ids:
        raise SiamtrackError(f"{name}: the first annotation ({anns[0].name}) holds no object")
    present = [i for i in ids if dv.label_object_mask(first, i, binary).any()]
    if tracker is not None:
        tracker.init(read_image(frames[0]), [mask_box(dv.label_object_mask(first, i, binary)) for i in present])
        if save_masks is not None:
            Path(save_masks, name).mkdir(parents=True, exist_ok=True)
            initial = np.zeros(first.shape, np.uint8)
            for i in present:
                initial[dv.label_object_mask(first, i, binary)] = i
            write_label_png(Path(save_masks) / name / anns[0].name, initial)
    j_vals: dict[int, list[float]] = {i: [] for i in ids}
    f_vals: dict[int, list[float]] = {i: [] for i in ids}
    # Per object and scored frame: the predicted and the ground-truth box as polygons (None: no box).
    box_preds: dict[int, list[np.ndarray | None]] = {i: [] for i in ids}
    box_gts: dict[int, list[np.ndarray]] = {i: [] for i in ids}
    last_scored = len(frames) - 2
    for t in range(1, len(frames)):
        scored = t <= last_scored
        if tracker is not None:  # the last frame is tracked too (speed, saved masks), not scored
            image = read_image(frames[t])
            results = clock.track(tracker, image)
            label = fuse_results(results, image.shape[:2], present)
            if save_masks is not None:
                write_label_png(Path(save_masks) / name / anns[t].name, label)
            pred = {i: label == i for i in ids}
            boxes = {i: r.box for i, r in zip(present, results, strict=True)}  # the tracker's own boxes
        elif scored:
            path = Path(pred_dir) / name / anns[t].name
            if not path.is_file():
                raise SiamtrackError(f"missing prediction {path}")
            pred = pred_objects(read_label_mask(path), len(ids), path)
            boxes = {i: mask_box(p) for i, p in pred.items()}  # masks only: their bounding boxes
        if not scored:
            break
        gt_label = read_label_mask(anns[t])
        for i in ids:
            gt = dv.label_object_mask(gt_label, i, binary)
            p = pred.get(i)
            if p is None:
                p = np.zeros_like(gt)
            if p.shape != gt.shape:
                raise SiamtrackError(f"{name}/{anns[t].name}: prediction is {p.shape[1]}x{p.shape[0]}, "
                                     f"annotation {gt.shape[1]}x{gt.shape[0]}")
            j_vals[i].append(dv.region_j(gt, p))
            f_vals[i].append(dv.boundary_f(gt, p))
            gt_box = mask_box(gt)  # an empty mask is a frame without a box, as the box benchmarks count it
            box_gts[i].append(bx.MISSING_BOX if gt_box is None else bx.box_polygon(gt_box))
            box_preds[i].append(_box_polygon(boxes.get(i)))
    objects = {}
    for i in ids:
        ope = bx.ope_sequence(box_preds[i], box_gts[i])
        objects[str(i)] = {"J": dv.statistics(j_vals[i]), "F": dv.statistics(f_vals[i]),
                           "J_per_frame": j_vals[i], "F_per_frame": f_vals[i], "box_auc": ope["success_auc"],
                           "box_success_curve": ope["success_curve"], "box_overlaps": ope["overlaps"]}
    box_curve = np.mean([o["box_success_curve"] for o in objects.values()], axis=0)
    return {"frames": len(frames), "scored_frames": last_scored, "initialised_objects": present,
            "scored_frame_names": [a.stem for a in anns[1:last_scored + 1]],
            **_davis_means(list(objects.values())), "box_auc": float(box_curve.mean()), "objects": objects}


# Boxes ----------------------------------------------------------------------------------------


def box_sequences(root: Path) -> list[tuple[str, list[Path], np.ndarray, bool]]:
    """``<seq>/{frames,img,color,.}/*.jpg`` with ``groundtruth.txt`` / ``groundtruth_rect.txt``.

    ``color/`` is the VOT toolkit's layout, so a toolkit workspace's ``sequences/`` is a ROOT too.

    Returns (name, frames, (N, 4, 2) ground-truth polygons, whether they are rotated polygons).
    """
    if not root.is_dir():
        raise SiamtrackError(f"{root} is not a folder")
    out = []
    for seq in sorted(p for p in root.iterdir() if p.is_dir()):
        gt_file = groundtruth_file(seq)
        if gt_file is None:
            continue
        img_dir = next((seq / d for d in ("frames", "img", "color") if (seq / d).is_dir()), seq)
        frames = list_images(img_dir)
        polys, rotated = parse_polygons(gt_file.read_text())
        n = min(len(frames), len(polys))
        if n < 2:
            raise SiamtrackError(f"{seq.name}: {len(frames)} frame(s) and {len(polys)} ground-truth line(s)")
        out.append((seq.name, frames[:n], polys[:n], rotated))
    return out


def evaluate_boxes(root: str | Path, tracker: ObjectTracker | None = None, *, restart: bool = False,
                   sequences: list[str] | None = None, max_frames: int | None = None,
                   eao_interval: tuple[int, int] = bx.EAO_INTERVAL,
                   on_sequence: Callable[[str, int], None] | None = None,
                   executor: Executor | None = None) -> dict[str, Any]:
    """One-pass evaluation (success AUC, precision at 20 px), or the VOT restart protocol with EAO
    averaged over the sequence lengths ``eao_interval``; tracked with ``tracker`` in this
    process, or on ``executor``'s workers."""
    if tracker is None and executor is None:
        raise ValueError("give a tracker or an executor")
    root = Path(root)
    found = box_sequences(root)
    if not found:
        raise SiamtrackError(f"{root}: no box sequences (<seq>/groundtruth.txt with frames)")
    chosen = _select([f[0] for f in found], sequences, root)
    items = []
    for name, frames, polys, rotated in (f for f in found if f[0] in chosen):
        if not restart and not bx.valid_groundtruth(polys[0]):
            raise SiamtrackError(f"{name}: the first frame has no ground-truth box to start from")
        items.append(_Sequence(name, [f.absolute() for f in frames[:max_frames]], polys=polys[:max_frames],
                               rotated=rotated, restart=restart))
    per_seq, tracked = _track_sequences(_boxes_task, items, tracker, executor, on_sequence)
    seqs = list(per_seq.values())
    summary = bx.restart_summary(seqs, eao_interval) if restart else bx.ope_summary(seqs)
    summary["sequences"] = len(seqs)
    benchmark = "boxes-restart" if restart else "boxes-ope"
    protocol = (f"VOT supervised: failure = zero overlap (regions clipped to the image), re-initialised "
                f"{bx.SKIP} frames later; accuracy without {bx.BURN_IN} burn-in frames per initialisation; "
                f"EAO over sequence lengths {eao_interval[0]}..{eao_interval[1]}"
                if restart else "OTB one-pass: all frames scored (frame 0 = the initial box); "
                                "sequence curves averaged")
    meta = {"benchmark": benchmark, "root": str(root), "max_frames": max_frames, "protocol": protocol, **tracked}
    return {"benchmark": benchmark, "meta": meta, "summary": summary, "sequences": per_seq}


def _boxes_task(tracker: ObjectTracker, item: _Sequence, stopped: Callable[[], bool]) -> _TaskResult:
    """One box sequence, one pass or with restarts."""
    clock = _Clock(stopped)
    frames, polys, rotated = item.frames, item.polys, item.rotated

    def init_box(f: int) -> tuple[float, float, float, float]:
        p = polys[f]
        return bx.vot_init_box(p) if rotated else (p[0, 0], p[0, 1], p[2, 0] - p[0, 0], p[2, 1] - p[0, 1])

    def predict(results) -> np.ndarray | None:
        r = results[0]
        if r.box is None:  # lost: a missing box (its rotated box is None too)
            return None
        return np.asarray(r.rotated.points, np.float64) if rotated else bx.box_polygon(r.box)

    info = {"frames": len(frames), "groundtruth": "poly8" if rotated else "xywh"}
    if item.restart:
        shape = read_image(frames[0]).shape

        def init(f: int) -> None:
            tracker.init(read_image(frames[f]), [init_box(f)])

        def step(f: int) -> np.ndarray:
            found = predict(clock.track(tracker, read_image(frames[f])))
            return bx.MISSING_BOX if found is None else found  # overlap 0: a failure

        result = {**info, **bx.vot_restart(len(frames), polys, init, step, bounds=(shape[1], shape[0]))}
    else:
        first = init_box(0)
        tracker.init(read_image(frames[0]), [first])
        preds = [bx.box_polygon(first)]
        preds += [predict(clock.track(tracker, read_image(f))) for f in frames[1:]]
        result = {**info, **bx.ope_sequence(preds, polys)}
    return result, clock.part, tracker_meta(tracker)


# Output ---------------------------------------------------------------------------------------


def tracker_meta(tracker: ObjectTracker) -> dict[str, Any]:
    """What identifies a run: tracker kind, model, architecture, preset (name and values), device, precision."""
    kind = "siammask" if tracker.arch != "opencv" else tracker.model_name
    return {"tracker": kind, "model": tracker.model_name, "arch": tracker.arch,
            "preset": None if tracker.preset is None else tracker.preset.to_dict(),
            "device": str(tracker.device), "precision": tracker.precision,
            "backend": getattr(tracker, "backend", None), "siamtrack": __version__}


def columns(results: dict[str, Any]) -> tuple[str, ...]:
    return {"davis": DAVIS_COLUMNS, "boxes-ope": OPE_COLUMNS, "boxes-restart": RESTART_COLUMNS}[results["benchmark"]]


def summary_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (one per sequence, then the overall scores) as formatted strings."""
    cols = columns(results)

    def fmt(value: Any) -> str:
        if value is None:
            return "-"
        return str(value) if isinstance(value, int) else f"{value:.3f}"

    rows = [[name, *(fmt(seq[c]) for c in cols)] for name, seq in results["sequences"].items()]
    summary = results["summary"]
    overall = [fmt(summary[c]) for c in cols]
    if results["benchmark"] == "boxes-restart":
        overall[-1] = f"{summary['failures']} ({summary['robustness']:.2f}/seq)"
    rows.append(["overall", *overall])
    return ["sequence", *cols], rows


def eao_line(summary: dict[str, Any]) -> str:
    """The expected average overlap and the lengths it averages, as one sentence."""
    lo, hi = summary["eao_interval"]
    if summary["eao"] is None:
        return f"EAO: - (no segment reaches length {lo}; the interval is {lo}..{hi})."
    return f"EAO: {summary['eao']:.3f} (expected average overlap over sequence lengths {lo}..{hi})."


def box_only_note(results: dict[str, Any]) -> str | None:
    """For DAVIS scores of a tracker that gives boxes only (the OpenCV ones): what its J and F measure."""
    meta = results["meta"]
    if results["benchmark"] != "davis" or meta.get("arch") != "opencv":
        return None
    return f"{meta['tracker']} gives boxes only: its mask is its filled box, and J and F score that box."


def markdown_table(results: dict[str, Any]) -> str:
    meta = results["meta"]
    header, rows = summary_rows(results)
    rows[-1] = [f"**{c}**" for c in rows[-1]]
    model = f" ({meta['model']})" if meta.get("model") and meta.get("model") != meta.get("tracker") else ""
    lines = [f"# {results['benchmark']}: {meta['tracker']}{model}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", f"Protocol: {meta['protocol']}."]
    if box_only_note(results):
        lines.append(box_only_note(results))
    if "eao" in results["summary"]:
        lines.append(eao_line(results["summary"]))
    if meta.get("fps"):
        lines.append(f"Speed: {meta['fps']:.1f} frames/s over {meta['tracked_frames']} tracked frames.")
    return "\n".join(lines) + "\n"


def success_plot(results: dict[str, Any], path: Path) -> bool:
    """The success plot (fraction of frames above each overlap threshold); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    summary, meta = results["summary"], results["meta"]
    score = {"davis": "J_mean", "boxes-ope": "success_auc", "boxes-restart": "accuracy"}[results["benchmark"]]
    score = summary[score]
    label = f"{meta['tracker']} [{score:.3f}]" if score is not None else meta["tracker"]
    xlabel = {"davis": "region similarity J threshold", "boxes-ope": "overlap threshold",
              "boxes-restart": "overlap threshold (counted frames)"}[results["benchmark"]]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(bx.THRESHOLDS, summary["success_curve"], label=label)
    ax.set(xlabel=xlabel, ylabel="success rate", title=f"Success plot ({results['benchmark']})",
           xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return True


def write_results(results: dict[str, Any], out_dir: str | Path) -> tuple[list[Path], list[str]]:
    """results.json, results.md and success.png; returns the files written and notes for the user."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SiamtrackError(f"cannot create {out} ({exc.strerror})") from None
    written = [out / "results.json", out / "results.md"]
    write_text_atomic(written[0], json.dumps(results, indent=1, allow_nan=False) + "\n")  # never half a file
    write_text_atomic(written[1], markdown_table(results))
    notes = []
    if success_plot(results, out / "success.png"):
        written.append(out / "success.png")
    else:
        notes.append("matplotlib is not installed: no success plot (pip install 'siamtrack[plot]')")
    return written, notes
