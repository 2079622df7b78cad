"""bf16 keeps fp32's decisions: the same cell chosen, and close masks where it is.

Teacher-forced: both trackers start every step from the same state, so one ambiguous frame
cannot compound into a different trajectory. Two things are measured apart, each with its own
bound: how many frames choose another response cell than fp32 (a "flip"; none where fp32's
margin is clear), and the mask IoU on the frames where both choose the same cell. bf16 moves
a top cell's penalised score by up to about 0.003, so a decision closer than
``engine.HALF_DECISION_MARGIN`` is re-made in fp32 (``Tracker.exact_decisions`` counts them);
without that, the golden tennis sequence flips on three near-ties (fp32 margins 4e-5 to 9e-5)
on AMX. The small check runs on every CPU (torch emulates bf16 where it is not native); the
golden sequences (29 frames each) run where bf16 is native. docs/eval.md gives the figures on
AMX, AVX512-BF16 and emulated bf16 (``ONEDNN_MAX_CPU_ISA``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from siamtrack import geometry as geo
from siamtrack.api import from_checkpoint
from siamtrack.backends import engine
from siamtrack.tracker import Tracker
from tests.test_golden import CASES, frames, iou, trajectory
from tests.test_tracker_api import START_BOX, frame_with_square


@dataclass
class Frame:
    same_cell: bool
    iou: float
    margin: float  # fp32's decision margin
    distance: float  # centre distance after the step, px


def teacher_forced(ref: Tracker, other: Tracker, steps) -> list[Frame]:
    """Both trackers on each ``(frame, centre, size)`` step from the same state."""
    out = []
    for frame, center, size in steps:
        for t in (ref, other):
            t.states[0].center = np.array(center, dtype=np.float64)
            t.states[0].size = np.array(size, dtype=np.float64)
        (a,) = ref.track(frame)
        (b,) = other.track(frame)
        ra, rb = ref.last_steps[-1], other.last_steps[-1]
        out.append(Frame((ra.best_row, ra.best_col) == (rb.best_row, rb.best_col), iou(a.mask, b.mask),
                         geo.decision_margin(ra.pscore), float(np.hypot(*(ref.states[0].center
                                                                            - other.states[0].center)))))
    return out


def check_decisions(measured: list[Frame], what: str, max_flips: int = 1, min_mean_iou: float = 0.97) -> None:
    flips = [f for f in measured if not f.same_cell]
    clear = [f for f in flips if f.margin >= 2 * engine.HALF_DECISION_MARGIN]
    assert not clear, f"{what}: bf16 flipped decisions with clear fp32 margins {[f.margin for f in clear]}"
    assert len(flips) <= max_flips, f"{what}: {len(flips)} flips (fp32 margins {[f.margin for f in flips]})"
    same = [f.iou for f in measured if f.same_cell]
    assert np.mean(same) >= min_mean_iou, f"{what}: mean mask IoU on same-cell frames {np.mean(same):.4f}"
    assert min(same) >= 0.9, f"{what}: worst same-cell mask IoU {min(same):.4f}"


def test_decision_margin_is_the_lead_over_the_best_other_cell():
    cells = 4
    pscore = np.array([0.1, 0.5, 0.2, 0.3,    # anchor 0, cells 0..3
                       0.45, 0.6, 0.0, 0.1])  # anchor 1: cell 1 again leads
    assert geo.decision_margin(pscore, cells) == pytest.approx(0.6 - 0.45)  # anchor 0's 0.5 is the same cell
    assert geo.decision_margin(np.array([0.2, 0.2, 0.1]), 3) == 0.0
    assert geo.decision_margin(np.array([0.3, 0.7]), 1) == math.inf  # one cell: nothing to flip to
    assert geo.decision_margin(np.full(4, -np.inf), 2) == math.inf


class _Shifted(engine._HalfTrunk):
    """A stand-in for a half-precision network: its fast trunk sees the crop shifted by a cell (an
    error that moves decisions), its ``exact_backbone`` is the true one."""

    def __init__(self, net, margin: float) -> None:
        super().__init__(net, "cpu", torch.bfloat16)
        self.decision_margin = margin

    def backbone(self, x):
        return self.inner.backbone(torch.roll(x, 8, dims=3))


@pytest.mark.parametrize("margin,redone", [(math.inf, True), (0.0, False)])
def test_a_near_tie_is_decided_by_the_exact_trunk(synthetic_checkpoint, margin, redone):
    """Below the network's ``decision_margin`` a step is re-made with ``exact_backbone``: then it is the
    fp32 step exactly (cell, state and mask), with two objects in one batch; above it the fast trunk decides."""
    ref = from_checkpoint(synthetic_checkpoint, preset="davis", device="cpu", precision="fp32")
    fast = from_checkpoint(synthetic_checkpoint, preset="davis", device="cpu", precision="fp32")
    fast.net.net = _Shifted(fast.net.net, margin)
    boxes = [START_BOX, (40, 30, 36, 30)]
    for t in (ref, fast):
        t.init(frame_with_square(*START_BOX[:2]), boxes)
    for x, y in ((104, 82), (110, 86)):
        a, b = ref.track(frame_with_square(x, y)), fast.track(frame_with_square(x, y))
        same = [(sa.best_id, sa.best_row, sa.best_col) == (sb.best_id, sb.best_row, sb.best_col)
                for sa, sb in zip(ref.last_steps, fast.last_steps, strict=True)]
        gap = max(float(np.abs(np.subtract(ra.box, rb.box)).max()) for ra, rb in zip(a, b, strict=True))
        if redone:
            assert all(same) and gap < 1e-4
            assert all(iou(ra.mask, rb.mask) >= 0.999 for ra, rb in zip(a, b, strict=True))
        else:
            assert gap > 1e-3  # the shifted trunk decided
    assert fast.exact_decisions == (4 if redone else 0)


# Two steps of a moving square (frame, centre, size) after START_BOX: the checks without golden data.
SQUARE_STEPS = [(frame_with_square(104, 82), (120.0, 100.0), (40.0, 40.0)),
                (frame_with_square(110, 86), (124.0, 102.0), (40.0, 40.0))]


def golden_case(config: str, seq: str) -> tuple[np.ndarray, list[float], list]:
    """First frame, box and teacher-forced steps of a golden sequence."""
    traj = trajectory(config, seq)
    fr = frames(seq)
    return fr[0], traj["init_box_xywh"], [(fr[s["frame"]], s["pre"]["target_pos"], s["pre"]["target_sz"])
                                          for s in traj["steps"]]


def half_against_fp32(checkpoint, preset: str, first: np.ndarray, box, steps, device: str,
                      precision: str) -> tuple[Tracker, list[Frame]]:
    """The ``precision`` tracker on ``device`` and its teacher-forced steps against fp32 there."""
    ref = from_checkpoint(checkpoint, preset=preset, device=device, precision="fp32")
    half = from_checkpoint(checkpoint, preset=preset, device=device, precision=precision)
    assert half.precision == precision and half.net.decision_margin == engine.HALF_DECISION_MARGIN
    for t in (ref, half):
        t.init(first, box)
    return half, teacher_forced(ref, half, steps)


def test_bf16_keeps_fp32_decisions_on_any_cpu(synthetic_checkpoint, monkeypatch):
    """Two steps of a moving square with the seeded official network (emulated bf16: seconds a step)."""
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: True)
    _, measured = half_against_fp32(synthetic_checkpoint, "davis", frame_with_square(*START_BOX[:2]), START_BOX,
                                    SQUARE_STEPS, "cpu", "bf16")
    check_decisions(measured, "moving square", max_flips=0, min_mean_iou=0.95)
    assert np.median([f.distance for f in measured]) <= 2.0


@pytest.mark.slow
@pytest.mark.skipif(not engine.cpu_has_native_bf16(),
                    reason="29 frames x 5 sequences of emulated bf16 take minutes; the check above covers this CPU")
@pytest.mark.parametrize("config,seq", CASES)
def test_bf16_keeps_fp32_decisions_on_the_golden_sequences(golden_dir, golden_checkpoint, config, seq):
    bf, measured = half_against_fp32(golden_checkpoint, config, *golden_case(config, seq), "cpu", "bf16")
    check_decisions(measured, f"{config}/{seq}")
    # bf16 decided most frames itself (0.21 of them re-made in fp32 on AMX with these flat random-weight
    # maps); a fallback taken on every frame would be fp32 under another name.
    assert bf.exact_decisions <= 0.5 * len(measured), f"{bf.exact_decisions} of {len(measured)} re-made in fp32"


@pytest.mark.parametrize("flags,sharp,lite", [
    ({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "bf16", "fp32"),  # Sapphire Rapids and later
    ({"avx512f", "avx512_bf16"}, "bf16", "fp32"),  # Zen 4: native bf16 dot products, no AMX
    ({"avx2", "fma"}, "fp32", "fp32"),  # bf16 emulated
], ids=["amx", "avx512-bf16", "no-bf16"])
def test_auto_precision_per_cpu_kind(monkeypatch, flags, sharp, lite):
    monkeypatch.setattr(engine, "_cpu_flags", lambda: frozenset(flags))
    cpu = torch.device("cpu")
    assert engine.choose_precision("auto", cpu, "siammask_sharp") == sharp
    assert engine.choose_precision("auto", cpu, "siammask_lite") == lite
    assert engine.choose_precision("auto", torch.device("cuda"), "siammask_lite") == "fp16"
    if "avx512_bf16" in flags:  # asked for explicitly, bf16 runs wherever it is native
        assert engine.choose_precision("bf16", cpu, "siammask_lite") == "bf16"
