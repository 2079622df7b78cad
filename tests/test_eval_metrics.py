"""DAVIS and box metrics on hand-made cases; J/F values equal those of the official DAVIS code."""

from __future__ import annotations

import numpy as np
import pytest

from siamtrack.eval import boxes as bx
from siamtrack.eval.davis import boundary_f, region_j, seg2bmap, statistics


def masks():
    h, w = 120, 160
    a = np.zeros((h, w), np.uint8)
    a[30:90, 40:120] = 1
    b = np.zeros((h, w), np.uint8)
    b[33:95, 35:110] = 1
    c = np.zeros((h, w), np.uint8)
    c[31:91, 41:121] = 1
    yy, xx = np.mgrid[0:h, 0:w]
    d = (((yy - 60) ** 2 / 900 + (xx - 80) ** 2 / 1600) < 1).astype(np.uint8)
    return a, b, c, d


# Values printed by davis2017-evaluation's metrics.db_eval_iou / f_measure and utils.db_statistics
# (davisvideochallenge/davis2017-evaluation) on exactly these masks.
OFFICIAL = {"ab": (0.7307692307692307, 0.036101083032490974), "ac": (0.9437133022879125, 1.0),
            "ad": (0.7810416666666666, 0.41599504029758216)}


def test_equals_official_davis_code():
    a, b, c, d = masks()
    for name, pred in (("ab", b), ("ac", c), ("ad", d)):
        j, f = OFFICIAL[name]
        assert region_j(a, pred) == pytest.approx(j, abs=1e-12)
        assert boundary_f(a, pred) == pytest.approx(f, abs=1e-12)
    stats = statistics(np.array([0.9, 0.8, 0.85, 0.3, 0.6, 0.7, 0.2, 0.95, 0.55, 0.4, 0.1]))
    assert stats["mean"] == pytest.approx(0.5772727272727273)
    assert stats["recall"] == pytest.approx(0.6363636363636364)
    assert stats["decay"] == pytest.approx(0.3625)


def test_identical_empty_and_shift():
    a, *_ = masks()
    assert region_j(a, a) == 1.0 and boundary_f(a, a) == 1.0
    empty = np.zeros_like(a)
    assert region_j(a, empty) == 0.0 and boundary_f(a, empty) == 0.0
    assert region_j(empty, empty) == 1.0 and boundary_f(empty, empty) == 1.0
    big = np.zeros((480, 854), np.uint8)
    big[100:400, 200:700] = 1
    shifted = np.roll(big, 1, axis=1)
    far = np.roll(big, 12, axis=1)
    assert 1 - boundary_f(big, far) > 1 - region_j(big, far)  # beyond the boundary tolerance F drops more
    assert region_j(big, shifted) < 1.0


def test_seg2bmap_is_one_pixel_boundary():
    m = np.zeros((10, 10), bool)
    m[2:6, 3:8] = True
    b = seg2bmap(m)
    assert not b[0].any() and b[1, 4] and b[5, 7] and not b[3, 5]  # 1 px, on the side of the change


def test_box_overlaps_and_ope():
    a = bx.box_polygon((0, 0, 10, 10))
    assert bx.polygon_iou(a, a) == pytest.approx(1.0)
    assert bx.polygon_iou(a, bx.box_polygon((5, 0, 10, 10))) == pytest.approx(50 / 150)
    assert bx.polygon_iou(a, bx.box_polygon((20, 20, 5, 5))) == 0.0
    rot = np.array([[5, -2], [12, 5], [5, 12], [-2, 5]], float)
    assert 0 < bx.polygon_iou(a, rot) < 1
    preds = [a, bx.box_polygon((5, 0, 10, 10)), bx.box_polygon((30, 0, 10, 10)), bx.box_polygon((0, 25, 10, 10))]
    s = bx.ope_sequence(preds, [a] * 4)
    curve = bx.success_curve(s["overlaps"])
    assert s["success_auc"] == pytest.approx(curve.mean()) and s["precision_20"] == 0.5  # errors 0, 5, 30, 25
    assert curve[0] == 0.5 and curve[-1] == 0.0


def test_vot_restart_counts_failures():
    n = 40
    gt = [bx.box_polygon((10, 10, 20, 20))] * n
    fail_at = {8, 25}
    inits = []

    def step(f):
        return bx.box_polygon((100, 100, 5, 5)) if f in fail_at else bx.box_polygon((12, 10, 20, 20))

    res = bx.vot_restart(n, gt, init=inits.append, step=step)
    assert res["failures"] == 2
    assert inits == [0, 13, 30]
    assert res["accuracy"] == pytest.approx(bx.polygon_iou(step(1), gt[1]))
    assert res["per_frame"][8] == "fail" and res["per_frame"][10] == "skip" and res["per_frame"][5] is None
