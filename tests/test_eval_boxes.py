"""Box metrics with known answers, the VOT restart protocol on a scripted tracker, OpenCV baselines."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from siamtrack.errors import SiamtrackError
from siamtrack.eval import baselines
from siamtrack.eval import boxes as bx
from siamtrack.eval.harness import evaluate_boxes
from siamtrack.geometry import RotatedBox
from siamtrack.results import TrackResult

SQUARE = bx.box_polygon((0, 0, 2, 2))
DIAMOND = np.array([[1, 0], [2, 1], [1, 2], [0, 1]], float)


def test_polygon_iou_known_values():
    assert bx.polygon_iou(SQUARE, SQUARE) == pytest.approx(1.0)
    assert bx.polygon_iou(SQUARE, bx.box_polygon((1, 0, 2, 2))) == pytest.approx(1 / 3)
    assert bx.polygon_iou(SQUARE, DIAMOND) == pytest.approx(0.5)  # the diamond lies inside, half the area
    assert bx.polygon_iou(SQUARE, bx.box_polygon((5, 5, 1, 1))) == 0.0
    assert bx.polygon_iou(SQUARE, bx.box_polygon((0, 0, 0, 2))) == 0.0  # degenerate
    assert bx.polygon_iou(SQUARE, np.full((4, 2), np.nan)) == 0.0


def test_rotated_polygon_iou_is_exact():
    # A square turned 45 degrees about the centre of an equal square: overlap is a regular octagon.
    c, r = np.array([10.0, 10.0]), 5 * math.sqrt(2)
    turned = np.array([c + r * np.array([math.cos(a), math.sin(a)]) for a in np.arange(4) * math.pi / 2])
    octagon = 2 * (math.sqrt(2) - 1) * 100  # area of the octagon inscribed in a 10x10 square
    expected = octagon / (200 - octagon)
    assert bx.polygon_iou(bx.box_polygon((5, 5, 10, 10)), turned) == pytest.approx(expected, rel=1e-5)


def test_bounds_clip_both_regions_to_the_image():
    half_out = bx.box_polygon((-2, 0, 4, 2))
    inside = bx.box_polygon((0, 0, 2, 2))
    assert bx.polygon_iou(half_out, inside) == pytest.approx(0.5)
    assert bx.polygon_iou(half_out, inside, bounds=(10, 10)) == pytest.approx(1.0)
    assert bx.polygon_iou(bx.box_polygon((-5, 0, 2, 2)), inside, bounds=(10, 10)) == 0.0


def test_center_error():
    assert bx.center_error(bx.box_polygon((0, 0, 2, 2)), bx.box_polygon((3, 4, 2, 2))) == pytest.approx(5.0)


def test_success_auc_on_known_overlaps():
    # Thresholds 0, 0.05, ..., 1 passed (strictly) by each overlap: 1.0 -> 20, 0.5 -> 10, 0 -> 0, 0.75 -> 15
    curve = bx.success_curve([1.0, 0.5, 0.0, 0.75])
    assert curve.mean() == pytest.approx(45 / (4 * 21))
    assert curve[0] == 0.75 and curve[-1] == 0.0
    # A perfect tracker reaches 20/21, as in the OTB and PySOT toolkits (overlap > 1 never holds).
    assert bx.success_curve([1.0] * 7).mean() == pytest.approx(20 / 21)


def test_missing_ground_truth_counts_as_the_toolkits_count_it():
    seq = bx.ope_sequence([SQUARE, SQUARE], [SQUARE, np.full((4, 2), np.nan)])
    assert seq["overlaps"] == [1.0, None]
    assert seq["success_curve"][0] == 0.5  # the frame without ground truth is a miss here...
    assert seq["precision_20"] == 1.0  # ...and a hit for precision


def test_benchmark_scores_average_sequences_not_frames():
    one = bx.ope_sequence([SQUARE], [SQUARE])
    far = bx.box_polygon((100, 100, 2, 2))
    three = bx.ope_sequence([far] * 3, [SQUARE] * 3)
    summary = bx.ope_summary([one, three])
    assert summary["success_auc"] == pytest.approx((20 / 21 + 0) / 2)
    assert summary["precision_20"] == pytest.approx(0.5)


def test_vot_init_box_is_the_official_area_preserving_box():
    x, y, w, h = bx.vot_init_box([10, 0, 20, 10, 10, 20, 0, 10])  # a diamond: area 200, bbox 20x20
    assert w == pytest.approx(20 * math.sqrt(0.5) + 1) and h == pytest.approx(w)
    assert (x + w / 2, y + h / 2) == pytest.approx((10, 10))


class Scripted:
    """Per frame, either the ground truth shrunk to a given overlap or a box far away (a failure)."""

    def __init__(self, gt, fail_at, overlap=0.5, burn_overlap=0.9):
        self.gt, self.fail_at = gt, set(fail_at)
        self.overlap, self.burn_overlap = overlap, burn_overlap
        self.inits: list[int] = []
        self.steps: list[int] = []

    def init(self, f):
        self.inits.append(f)

    def step(self, f):
        self.steps.append(f)
        if f in self.fail_at:
            return bx.box_polygon((500, 500, 10, 10))
        last_init = max(i for i in self.inits if i <= f)
        scale = self.burn_overlap if f - last_init < bx.BURN_IN else self.overlap
        x, y, w, h = self.gt
        return bx.box_polygon((x, y, w * scale, h))  # a box inside the ground truth: IoU = scale


def test_vot_restart_counts_failures_and_reinitialises_five_frames_later():
    n, gt = 60, (10.0, 10.0, 40.0, 20.0)
    polys = [bx.box_polygon(gt)] * n
    fake = Scripted(gt, fail_at=[12, 30, 58])
    res = bx.vot_restart(n, polys, fake.init, fake.step, bounds=(640, 480))
    assert res["failures"] == 3 and res["failure_frames"] == [12, 30, 58]
    assert fake.inits == [0, 17, 35]  # 58 + 5 is past the end
    assert all(res["per_frame"][f] == "skip" for f in (13, 14, 15, 16, 31, 59))
    assert 13 not in fake.steps and 59 not in fake.steps
    counted = [f for f, v in enumerate(res["per_frame"]) if isinstance(v, float)]
    # Burn-in: the initialisation frame and the 9 after it are left out of accuracy.
    assert counted == [10, 11, *range(27, 30), *range(45, 58)]
    assert res["accuracy"] == pytest.approx(0.5)  # the 0.9 burn-in overlaps do not count
    assert res["counted_frames"] == 18


def test_vot_restart_without_failures():
    n, gt = 15, (0.0, 0.0, 10.0, 10.0)
    fake = Scripted(gt, fail_at=[], overlap=0.8)
    res = bx.vot_restart(n, [bx.box_polygon(gt)] * n, fake.init, fake.step)
    assert res["failures"] == 0 and fake.inits == [0]
    assert res["accuracy"] == pytest.approx(0.8) and res["counted_frames"] == 5


def test_restart_summary_pools_frames_and_averages_failures():
    a = {"per_frame": ["init", 0.5, 0.5, 0.5], "failures": 2}
    b = {"per_frame": ["init", 1.0], "failures": 1}
    s = bx.restart_summary([a, b])
    assert s["accuracy"] == pytest.approx(2.5 / 4)
    assert s["failures"] == 3 and s["robustness"] == pytest.approx(1.5)


# Harness on a generated folder -------------------------------------------------------------------


def make_box_folder(root, layout, n=12, rotated=False, sep=","):
    """One sequence: a bright square moving right on black frames, with its ground truth."""
    seq = root / f"seq_{layout}"
    img_dir = {"frames": seq / "frames", "img": seq / "img", "flat": seq}[layout]
    img_dir.mkdir(parents=True)
    lines = []
    for t in range(n):
        image = np.zeros((120, 160, 3), np.uint8)
        x, y = 20 + 3 * t, 40
        image[y:y + 30, x:x + 30] = 255
        cv2.imwrite(str(img_dir / f"{t + 1:04d}.jpg"), image)
        if rotated:
            pts = [x, y, x + 30, y, x + 30, y + 30, x, y + 30]
            lines.append(sep.join(f"{v:.2f}" for v in pts))
        else:
            lines.append(sep.join(str(v) for v in (x, y, 30, 30)))
    name = "groundtruth_rect.txt" if layout == "img" else "groundtruth.txt"
    (seq / name).write_text("\n".join(lines) + "\n")
    return seq


class GroundTruthTracker:
    """A perfect tracker for ``make_box_folder`` clips: finds the frame index from the square's position."""

    arch = "opencv"
    model_name = "oracle"
    precision = "n/a"
    device = "cpu"
    preset = None

    def __init__(self, truth):
        self.truth = truth

    def init(self, frame, boxes):
        return [0]

    def track(self, frame):
        bright = np.flatnonzero(frame[..., 0].max(axis=0) > 128)
        x, y, w, h = self.truth[int(round((bright[0] - 20) / 3))]
        pts = bx.box_polygon((x, y, w, h))
        rot = RotatedBox(pts, x + w / 2, y + h / 2, w, h, 0.0)
        return [TrackResult(0, (x, y, w, h), rot, np.zeros((1, 1), bool), np.zeros((1, 1), np.float32), 1.0, "box")]


@pytest.mark.parametrize("layout,sep", [("frames", ","), ("img", "\t"), ("flat", " ")])
def test_ope_harness_with_a_perfect_tracker(tmp_path, layout, sep):
    make_box_folder(tmp_path, layout, sep=sep)
    truth = [(20 + 3 * t, 40, 30, 30) for t in range(12)]
    results = evaluate_boxes(tmp_path, GroundTruthTracker(truth))
    seq = results["sequences"][f"seq_{layout}"]
    assert seq["overlaps"] == [pytest.approx(1.0)] * 12 and seq["groundtruth"] == "xywh"
    assert results["summary"]["success_auc"] == pytest.approx(20 / 21)
    assert results["summary"]["precision_20"] == 1.0
    assert results["meta"]["tracked_frames"] == 11


def test_restart_harness_counts_a_lost_tracker(tmp_path):
    make_box_folder(tmp_path, "frames", n=30, rotated=True)
    truth = [(20 + 3 * t, 40, 30, 30) for t in range(30)]
    truth[12] = (140, 100, 5, 5)  # a jump away from the object on frame 12
    results = evaluate_boxes(tmp_path, GroundTruthTracker(truth), restart=True)
    seq = results["sequences"]["seq_frames"]
    assert seq["groundtruth"] == "poly8" and seq["frames"] == 30 and len(seq["per_frame"]) == 30
    assert seq["failure_frames"] == [12]
    assert results["summary"]["failures"] == 1 and results["summary"]["robustness"] == 1.0


def test_box_folder_errors(tmp_path):
    with pytest.raises(SiamtrackError, match="no box sequences"):
        evaluate_boxes(tmp_path, GroundTruthTracker([]))
    make_box_folder(tmp_path, "frames")
    with pytest.raises(SiamtrackError, match="not found"):
        evaluate_boxes(tmp_path, GroundTruthTracker([]), sequences=["other"])


# OpenCV baselines ------------------------------------------------------------------------------------


def test_mil_baseline_returns_filled_box_masks():
    assert "opencv-mil" in baselines.available()
    frames = [np.zeros((120, 160, 3), np.uint8) for _ in range(3)]
    for t, f in enumerate(frames):
        f[40:70, 20 + 3 * t:50 + 3 * t] = (40, 200, 255)
    tracker = baselines.OpenCVTracker("opencv-mil")
    assert tracker.init(frames[0], [(20, 40, 30, 30)]) == [0]
    (result,) = tracker.track(frames[1])
    x, y, w, h = (int(round(v)) for v in result.box)
    assert result.mask.sum() == w * h and result.mask[y:y + h, x:x + w].all()
    assert result.polygon_source == "box"
    assert bx.polygon_iou(result.rotated.points, bx.box_polygon(result.box)) == pytest.approx(1.0)


def test_unavailable_or_unknown_baseline_is_a_one_line_error():
    with pytest.raises(SiamtrackError, match="unknown baseline"):
        baselines.OpenCVTracker("opencv-boosting")
    missing = [n for n in baselines.FACTORIES if n not in baselines.available()]
    if not missing:
        pytest.skip("this OpenCV build has every baseline (contrib)")
    with pytest.raises(SiamtrackError, match="opencv-contrib-python") as err:
        baselines.OpenCVTracker(missing[0])
    assert "\n" not in str(err.value)


def test_vot_restart_neither_fails_nor_counts_frames_without_annotation():
    n, gt = 16, (0.0, 0.0, 10.0, 10.0)
    polys = [bx.box_polygon(gt)] * n
    polys[0] = polys[13] = np.full((4, 2), np.nan)
    fake = Scripted(gt, fail_at=[13], overlap=0.8)
    res = bx.vot_restart(n, polys, fake.init, fake.step)
    assert fake.inits == [1]  # frame 0 has nothing to start from
    assert res["per_frame"][13] == "nogt" and res["failures"] == 0
    assert res["counted_frames"] == 4  # frames 11, 12, 14, 15
