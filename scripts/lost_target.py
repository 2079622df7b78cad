"""Lost-target measurements: generated clips, painted occluders on real sequences, and threshold tuning.

    python scripts/lost_target.py scenarios [--seeds 0-5]          # the generated-clip table
    python scripts/lost_target.py painted DAVIS_ROOT [--seqs a,b]   # a painted occluder on real clips
    python scripts/lost_target.py tune TRAIN_VIDEOS                 # the preset's thresholds
    python scripts/lost_target.py dev DAVIS_ROOT                    # J/F and the fraction of tracked frames

Per case: the object is fully hidden on a span of frames. Reported: the fraction of hidden
frames (after 2 frames of latency) flagged ``lost``, the flag latency, mask pixels drawn
while hidden, and the re-acquisition delay (frames from the first frame the object is at
least half visible again until mask IoU >= 0.5). ``tune`` reads the normal step's score and
appearance on training data only (generated clips with seeds >= 100, the held-back training
sequences with an occluder painted in, and clean training sequences) and prints how often
each appearance threshold calls a hidden and a clean frame a miss (siamtrack.presets.LOST_TUNING).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from siamtrack.api import from_pretrained
from siamtrack.io.synthetic import SCENARIOS, SyntheticFrame, scenario
from siamtrack.tracker import Tracker

LATENCY = 2
REACQUIRE_WITHIN = 10


@dataclass
class Case:
    name: str
    hidden: list[bool] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    areas: list[int] = field(default_factory=list)
    ious: list[float] = field(default_factory=list)
    visible: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        h = np.array(self.hidden)
        idx = np.flatnonzero(h)
        first, last = int(idx[0]), int(idx[-1])
        judged = [t for t in idx if t >= first + LATENCY]
        flagged = [t for t in judged if self.states[t] == "lost" and self.areas[t] == 0]
        latency = next((int(t - first) for t in idx if self.states[t] == "lost"), None)
        back = next((t for t in range(last + 1, len(h)) if self.visible[t] >= 0.5), None)
        delay = None
        if back is not None:
            delay = next((int(t - back) for t in range(back, len(h)) if self.ious[t] >= 0.5), None)
        return {"case": self.name, "hidden_frames": len(idx), "flag_rate": len(flagged) / max(len(judged), 1),
                "latency": latency, "false_mask_px": int(sum(self.areas[t] for t in idx)),
                "reacquire_delay": delay, "reacquired": delay is not None and delay <= REACQUIRE_WITHIN}


def run_case(tracker: Tracker, name: str, frames: list[SyntheticFrame]) -> Case:
    case = Case(name)
    tracker.init(frames[0].image, [frames[0].box])
    for f in frames[1:]:
        (r,) = tracker.track(f.image)
        union = np.count_nonzero(r.mask | f.mask)
        case.hidden.append(f.visible == 0)
        case.visible.append(f.visible)
        case.states.append(r.state)
        case.areas.append(r.mask_area)
        case.ious.append(np.count_nonzero(r.mask & f.mask) / union if union else 1.0)
        case.scores.append(float(r.score))
    return case


def table(rows: list[dict]) -> str:
    keys = list(rows[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        out.append("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    flag = np.mean([r["flag_rate"] for r in rows])
    reacq = np.mean([r["reacquired"] for r in rows])
    delays = [r["reacquire_delay"] for r in rows if r["reacquire_delay"] is not None]
    out.append(f"\nmean flag rate {flag:.3f}; re-acquired within {REACQUIRE_WITHIN} frames: {reacq:.3f}; "
               f"median delay {np.median(delays) if delays else None}; "
               f"false-mask pixels while hidden: {sum(r['false_mask_px'] for r in rows)}")
    return "\n".join(out)


def seeds(text: str) -> list[int]:
    a, _, b = text.partition("-")
    return list(range(int(a), int(b or a) + 1))


def painted(images: list[np.ndarray], masks: list[np.ndarray], span: tuple[int, int], seed: int
            ) -> list[SyntheticFrame]:
    """A real clip with a textured board covering the object's ground truth (plus a margin) on ``span``."""
    rng = np.random.default_rng(seed)
    out = []
    h, w = images[0].shape[:2]
    board = cv2.GaussianBlur(rng.integers(40, 200, (h, w, 3)).astype(np.uint8), (0, 0), 6)
    for t, (img, m) in enumerate(zip(images, masks, strict=True)):
        img, m = img.copy(), m.copy()
        if span[0] <= t < span[1] and m.any():
            x, y, bw, bh = cv2.boundingRect(m.view(np.uint8))
            pad = int(0.1 * max(bw, bh)) + 4
            sl = np.s_[max(y - pad, 0):y + bh + pad, max(x - pad, 0):x + bw + pad]
            img[sl] = board[sl]
            m[sl] = False
        full = np.count_nonzero(masks[t])
        x, y, bw, bh = cv2.boundingRect(m.view(np.uint8))
        out.append(SyntheticFrame(img, m, (float(x), float(y), float(bw), float(bh)),
                                  np.count_nonzero(m) / full if full else 0.0))
    return out


def read_sequence(img_dir: Path, ann_dir: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    names = sorted(p.stem for p in img_dir.glob("*.jpg"))
    images = [cv2.imread(str(img_dir / f"{n}.jpg")) for n in names]
    masks = [cv2.imread(str(ann_dir / f"{n}.png"), cv2.IMREAD_GRAYSCALE) > 0 for n in names]
    return images, masks


def painted_cases(root: Path, seqs: list[str], layout: str) -> list[tuple[str, list[SyntheticFrame]]]:
    """Each sequence with the object covered from 40% of its length for 20 frames (or a third of it)."""
    cases = []
    for k, name in enumerate(seqs):
        if layout == "davis":
            images, masks = read_sequence(root / "JPEGImages" / "480p" / name, root / "Annotations" / "480p" / name)
        else:
            images, masks = read_sequence(root / name / "JPEGImages", root / name / "Annotations")
        n = len(images)
        start, length = int(0.4 * n), min(20, n // 3)
        cases.append((name, painted(images, masks, (start, start + length), k)))
    return cases


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("scenarios", "painted", "tune", "dev"))
    ap.add_argument("root", nargs="?", type=Path)
    ap.add_argument("--seeds", default="0-5")
    ap.add_argument("--seqs", default=None)
    ap.add_argument("--preset", default=None, help="JSON of preset fields to change")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--model", default=None, help="registry model (default: the default model)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    tracker = from_pretrained(args.model, device="cpu")
    if args.preset:
        tracker.with_preset(**json.loads(args.preset))
    if args.what == "scenarios":
        cases = [(f"{kind}/{s}", list(scenario(kind, seed=s))) for kind in SCENARIOS for s in seeds(args.seeds)]
    elif args.what == "painted":
        names = args.seqs.split(",") if args.seqs else sorted(p.name for p in (args.root / "JPEGImages/480p").iterdir())
        cases = painted_cases(args.root, names, "davis")
    elif args.what == "dev":
        dev(tracker, args.root)
        return
    else:
        tune(tracker, args.root)
        return
    rows = []
    for name, frames in cases:
        case = run_case(tracker, name, frames)
        rows.append(case.summary())
        print(rows[-1], file=sys.stderr, flush=True)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


def dev(tracker: Tracker, root: Path) -> None:
    """DAVIS J/F as ``siamtrack eval davis`` scores it, and how many frames each state took."""
    from siamtrack.eval.harness import evaluate_davis

    counts: dict[str, int] = {}
    track = tracker.track

    def counting(frame, **kw):
        out = track(frame, **kw)
        for r in out:
            counts[r.state] = counts.get(r.state, 0) + 1
        return out

    tracker.track = counting
    res = evaluate_davis(root, tracker)
    total = sum(counts.values())
    s = res["summary"]
    print(f"J {s['J_mean']:.3f} F {s['F_mean']:.3f} JF {s['JF_mean']:.3f}; states "
          + ", ".join(f"{k} {v / total:.3f}" for k, v in sorted(counts.items())) + f" of {total} object-frames")
    for name, seq in res["sequences"].items():
        print(f"  {name}: J {seq['J_mean']:.3f} F {seq['F_mean']:.3f}")


TUNE_SEQUENCES = ("hike", "soccerball", "swing")  # held back from training the shipped model
CLEAN_SEQUENCES = (*TUNE_SEQUENCES, "motocross-bumps", "bmx-bumps", "dance-jump", "breakdance-flare", "dog-agility",
                   "rollerblade", "hockey", "kite-walk")


def evidence(tracker: Tracker, frames: list[SyntheticFrame]) -> np.ndarray:
    """(score, appearance, hidden) of the normal step on every frame, with losing switched off."""
    from siamtrack import lost

    seen: list[tuple[float, float]] = []
    observe = lost.StateMachine.observe

    def record(machine, ev):
        seen.append((ev.score, ev.look))
        return observe(machine, ev)

    lost.StateMachine.observe = record
    try:
        tracker.init(frames[0].image, [frames[0].box])
        for f in frames[1:]:
            tracker.track(f.image)
    finally:
        lost.StateMachine.observe = observe
    return np.array([(s, lk, f.visible == 0) for (s, lk), f in zip(seen, frames[1:], strict=True)])


def tune(tracker: Tracker, videos: Path) -> None:
    """How often each appearance threshold calls a frame a miss: on hidden frames of training-only
    clips (generated, seeds 100-103; painted held-back sequences) and on clean training sequences."""
    tracker.with_preset(lost_score=0.0, uncertain_score=0.0, lost_look=0.0)  # never lost: plain traces
    found = PRESET_FOUND_SCORE
    cases = [list(scenario(kind, seed=s)) for kind in SCENARIOS for s in range(100, 104)]
    cases += [f for _, f in painted_cases(videos, list(TUNE_SEQUENCES), "train")]
    hidden = np.concatenate([e[e[:, 2] == 1] for e in (evidence(tracker, c) for c in cases)])
    clean = []
    for name in CLEAN_SEQUENCES:
        images, masks = read_sequence(videos / name / "JPEGImages", videos / name / "Annotations")
        x, y, w, h = cv2.boundingRect(masks[0].view(np.uint8))
        clean.append(evidence(tracker, [SyntheticFrame(i, m, (x, y, w, h), 1.0) for i, m in zip(images, masks,
                                                                                                   strict=True)]))
    clean_ev = np.concatenate(clean)
    for look in (0.6, 0.65, 0.7, 0.75, 0.8):
        for gated in (False, True):
            def miss(e: np.ndarray, look=look, gated=gated) -> np.ndarray:
                low = e[:, 1] < look
                return (low & (e[:, 0] < found)) | (e[:, 0] < 0.3) if gated else low | (e[:, 0] < 0.3)
            print(f"lost_look {look}{' gated by found_score' if gated else ''}: misses on hidden frames "
                  f"{miss(hidden).mean():.3f}, on clean frames {miss(clean_ev).mean():.3f}")


PRESET_FOUND_SCORE = 0.9


if __name__ == "__main__":
    main()
