"""bf16 stays close to fp32: per-frame mask IoU >= 0.95 on average, centres within 2 px (median).

Teacher-forced on the golden sequences: both trackers start every step from the recorded
official state, so one ambiguous frame cannot compound into a different trajectory.
"""

from __future__ import annotations

import numpy as np
import pytest

from siamtrack.engine import cpu_has_native_bf16
from siamtrack.tracker import Tracker
from tests.test_golden import CASES, frames, iou, trajectory

pytestmark = pytest.mark.skipif(not cpu_has_native_bf16(),
                                reason="this CPU has no native bf16 (AVX512-BF16 or AMX); bf16 is not offered here")


@pytest.mark.slow
@pytest.mark.parametrize("config,seq", CASES)
def test_bf16_close_to_fp32(golden_dir, synthetic_checkpoint, config, seq):
    traj = trajectory(config, seq)
    fr = frames(seq)
    ref = Tracker.from_checkpoint(synthetic_checkpoint, preset=config, device="cpu", precision="fp32")
    bf = Tracker.from_checkpoint(synthetic_checkpoint, preset=config, device="cpu", precision="bf16")
    assert bf.precision == "bf16"
    for t in (ref, bf):
        t.init(fr[0], traj["init_box_xywh"])
    ious, dists = [], []
    for step in traj["steps"]:
        for t in (ref, bf):
            t.states[0].center = np.array(step["pre"]["target_pos"], dtype=np.float64)
            t.states[0].size = np.array(step["pre"]["target_sz"], dtype=np.float64)
        (a,) = ref.track(fr[step["frame"]])
        (b,) = bf.track(fr[step["frame"]])
        ious.append(iou(a.mask, b.mask))
        dists.append(float(np.hypot(*(ref.states[0].center - bf.states[0].center))))
    assert np.mean(ious) >= 0.95, f"mean mask IoU {np.mean(ious):.4f}"
    assert np.median(dists) <= 2.0, f"median centre distance {np.median(dists):.3f} px"
