"""DAVIS J/F: hand-made masks with known answers, and equality with the official DAVIS-2017 code.

The ``OFFICIAL_*`` numbers were produced by running the official evaluation
(davisvideochallenge/davis2017-evaluation @ ac7c43f: ``db_eval_iou``, ``db_eval_boundary``,
``db_statistics`` and ``DAVISEvaluation(task="semi-supervised").evaluate``, with scikit-image
0.26 and OpenCV 5) outside this repository on exactly the masks the builders below draw.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamtrack.errors import SiamtrackError
from siamtrack.eval import davis as dv
from siamtrack.eval.harness import evaluate_davis, fuse_results, write_results
from siamtrack.geometry import RotatedBox
from siamtrack.results import TrackResult

BIG, SMALL = (480, 854), (60, 80)


def ellipse(shape, cy, cx, ry, rx):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def rect(shape, y0, y1, x0, x1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def pair_cases():
    gt = ellipse(BIG, 240, 400, 120, 200)
    blob = ellipse(BIG, 250, 380, 100, 230) & ~rect(BIG, 230, 260, 300, 340) | ellipse(BIG, 60, 700, 20, 30)
    thin = rect(BIG, 50, 400, 500, 502) | rect(BIG, 50, 52, 300, 700)
    return {
        "shift1": (gt, ellipse(BIG, 240, 401, 120, 200)),
        "blob": (gt, blob),
        "corner": (rect(BIG, 300, 480, 700, 854), rect(BIG, 310, 480, 690, 850)),
        "small": (ellipse(SMALL, 30, 40, 20, 25), ellipse(SMALL, 33, 37, 18, 27)),
        "thin": (thin, np.roll(thin, 3, axis=1)),
        "far": (ellipse(BIG, 100, 100, 30, 30), ellipse(BIG, 400, 700, 30, 30)),
    }


# (J, F) from the official db_eval_iou / db_eval_boundary
OFFICIAL_PAIRS = {
    "shift1": (0.9936258562776059, 1.0),
    "blob": (0.7542263601840788, 0.270587163208894),
    "corner": (0.8667573079537729, 0.04066985645933014),
    "small": (0.7758521086077412, 0.3613926119646943),
    "thin": (0.3612374886260237, 1.0),
    "far": (0.0, 0.0),
}

STAT_LISTS = {
    "eleven": [0.9, 0.8, 0.85, 0.4, 0.6, 0.3, 0.7, 0.2, 0.55, 0.1, 0.45],
    "seven": [1.0, 0.5, 0.51, 0.49, 0.2, 0.8, 0.0],
    "three": [0.7, 0.2, 0.9],
}
# (mean, recall, decay) from the official db_statistics
OFFICIAL_STATS = {
    "eleven": (0.5318181818181817, 0.5454545454545454, 0.37083333333333335),
    "seven": (0.5, 0.42857142857142855, 0.2699999999999999),
    "three": (0.6, 0.6666666666666666, -0.45000000000000007),
}


def palette_sequences():
    """name -> (ground-truth labels, predicted labels): palette indices, 90x160, void (255) in places."""
    shape = (90, 160)
    seqs = {}
    gts, preds = [], []
    for t in range(8):
        g = np.zeros(shape, np.uint8)
        p = np.zeros(shape, np.uint8)
        g[ellipse(shape, 45, 30 + 5 * t, 20, 15)] = 1
        p[ellipse(shape, 46, 31 + 6 * t, 19, 16)] = 1
        if t not in (4, 5):
            g[rect(shape, 10 + 2 * t, 40 + 2 * t, 100, 130)] = 2
        if t != 4:
            p[rect(shape, 12 + 2 * t, 41 + 2 * t, 98, 131 - t)] = 2
        if t == 3:
            g[rect(shape, 70, 90, 0, 160)] = 255
        gts.append(g)
        preds.append(p)
    seqs["seqa"] = (gts, preds)
    gts, preds = [], []
    for t in range(6):
        g = np.zeros(shape, np.uint8)
        p = np.zeros(shape, np.uint8)
        g[rect(shape, 20, 70, 40 + 4 * t, 100 + 4 * t)] = 1
        g[ellipse(shape, 45, 70 + 4 * t, 8, 8)] = 255
        p[ellipse(shape, 45, 72 + 5 * t, 26, 32)] = 1
        gts.append(g)
        preds.append(p)
    seqs["seqb"] = (gts, preds)
    return seqs


# Official DAVISEvaluation on that folder: per object (seqa/1, seqa/2, seqb/1) mean, recall, decay
OFFICIAL_FOLDER = {
    "J": {"mean": [0.6868314337356266, 0.6966891848380606, 0.7043425596658635],
          "recall": [1.0, 0.8333333333333334, 1.0],
          "decay": [0.22371794497379938, 0.4803958330175011, 0.035436350883735535]},
    "F": {"mean": [0.38591372028638476, 0.7830863273282782, 0.3530084988835819],
          "recall": [0.3333333333333333, 0.8333333333333334, 0.0],
          "decay": [0.48786936598735925, 0.6298890969998456, 0.04260298705239696]},
}
OFFICIAL_FOLDER_MEANS = {"J_mean": 0.6959543927465169, "F_mean": 0.5073361821660817}


def write_davis(root, seqs, pred_root=None, binary=False):
    """A DAVIS-layout folder (black JPEG frames) with the given labels; predictions under ``pred_root``."""
    import cv2

    for name, (gts, preds) in seqs.items():
        img = root / "JPEGImages" / "480p" / name
        ann = root / "Annotations" / "480p" / name
        img.mkdir(parents=True)
        ann.mkdir(parents=True)
        for t, g in enumerate(gts):
            cv2.imwrite(str(img / f"{t:05d}.jpg"), np.zeros((*g.shape, 3), np.uint8))
            Image.fromarray((g > 0).astype(np.uint8) * 255 if binary else g).save(ann / f"{t:05d}.png")
            if pred_root is not None:
                (pred_root / name).mkdir(parents=True, exist_ok=True)
                Image.fromarray(preds[t]).save(pred_root / name / f"{t:05d}.png")
    return root


# Metric definitions --------------------------------------------------------------------------


def test_identical_masks_score_one():
    gt = ellipse(BIG, 240, 400, 120, 200)
    assert dv.region_j(gt, gt.copy()) == 1.0
    assert dv.boundary_f(gt, gt.copy()) == 1.0


def test_empty_prediction_scores_zero():
    gt = ellipse(BIG, 240, 400, 120, 200)
    empty = np.zeros(BIG, bool)
    assert dv.region_j(gt, empty) == 0.0
    assert dv.boundary_f(gt, empty) == 0.0
    assert dv.region_j(empty, gt) == 0.0
    assert dv.boundary_f(empty, gt) == 0.0


def test_two_empty_masks_score_one():
    empty = np.zeros(SMALL, bool)
    assert dv.region_j(empty, empty) == 1.0
    assert dv.boundary_f(empty, empty) == 1.0


def test_one_pixel_shift_costs_the_boundary_more_than_the_region():
    gt = ellipse(BIG, 240, 400, 120, 200)
    shifted = np.roll(gt, 1, axis=1)
    j = dv.region_j(gt, shifted)
    assert 0.99 < j < 1.0
    # With exact boundary matching (radius 0) a third of the boundary moves off.
    assert dv.boundary_f(gt, shifted, bound_th=0) < 0.7 < j
    # The DAVIS tolerance (8 px at 854x480) absorbs one pixel, but not twelve:
    assert dv.boundary_f(gt, shifted) == 1.0
    far = np.roll(gt, 12, axis=1)
    assert 1 - dv.boundary_f(gt, far) > 2 * (1 - dv.region_j(gt, far))


def test_seg2bmap_hand_worked():
    seg = np.zeros((4, 4), bool)
    seg[1:3, 1:3] = True
    expected = np.array([[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], bool)
    np.testing.assert_array_equal(dv.seg2bmap(seg), expected)


def test_boundary_tolerance_from_the_diagonal():
    assert dv.boundary_tolerance((480, 854)) == 8  # ceil(0.008 * 979.6)
    assert dv.boundary_tolerance((60, 80)) == 1
    assert dv.boundary_tolerance((480, 854), bound_th=3) == 3
    assert dv.disk(2).sum() == 13


@pytest.mark.parametrize("name", sorted(OFFICIAL_PAIRS))
def test_j_and_f_equal_the_official_code(name):
    gt, pred = pair_cases()[name]
    j, f = OFFICIAL_PAIRS[name]
    assert dv.region_j(gt, pred) == pytest.approx(j, abs=1e-12)
    assert dv.boundary_f(gt, pred) == pytest.approx(f, abs=1e-12)


@pytest.mark.parametrize("name", sorted(OFFICIAL_STATS))
def test_statistics_equal_the_official_code(name):
    stats = dv.statistics(STAT_LISTS[name])
    expected = OFFICIAL_STATS[name]
    assert [stats["mean"], stats["recall"], stats["decay"]] == pytest.approx(list(expected), abs=1e-12)


def test_decay_is_first_quarter_minus_last():
    # 8 values: edges round(linspace(1, 8, 5) + 1e-10) - 1 = 0, 2, 4, 5, 7 -> first bin [0:3], last [5:8]
    values = [1.0, 1.0, 1.0, 0.5, 0.5, 0.0, 0.2, 0.4]
    assert dv.statistics(values)["decay"] == pytest.approx(1.0 - 0.2)


def official_uint8_decay(values):
    """The official ``db_statistics`` decay, cut indices cast to uint8 as it casts them."""
    x = np.asarray(values, dtype=np.float64)
    ids = (np.round(np.linspace(1, len(x), 5) + 1e-10) - 1).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # an empty bin, as beyond 255 values
        return np.nanmean(x[ids[0]:ids[1] + 1]) - np.nanmean(x[ids[3]:ids[4] + 1])


def test_decay_equals_the_official_uint8_cut_wherever_that_is_defined():
    rng = np.random.default_rng(3)
    for n in range(1, 256):  # 256 values: ids[4] + 1 overflows uint8 too (NumPy 2)
        values = rng.random(n)
        assert dv.statistics(values)["decay"] == official_uint8_decay(values), n


def test_decay_of_300_values_is_finite_and_known():
    # edges round(linspace(1, 300, 5) + 1e-10) - 1 = 0, 75, 150, 224, 299: first bin [0:76], last [224:300]
    values = np.arange(300) / 299
    assert np.isnan(official_uint8_decay(values))  # 299 wraps to 43: an empty last bin
    assert dv.statistics(values)["decay"] == pytest.approx((37.5 - 261.5) / 299, abs=1e-12)


def test_label_semantics():
    binary = np.array([[0, 255], [255, 0]], np.uint8)
    palette = np.array([[0, 1], [3, 255]], np.uint8)
    assert dv.is_binary_label(binary) and not dv.is_binary_label(palette)
    assert dv.label_object_ids(binary) == [1]
    assert dv.label_object_ids(palette) == [1, 2, 3]  # up to the largest index, void excluded
    assert not dv.label_object_mask(palette, 3, binary=False)[1, 1]  # void is background
    assert dv.label_object_mask(binary, 1, binary=True).sum() == 2


def _result(obj_id, mask, prob):
    box = RotatedBox(np.zeros((4, 2)), 0, 0, 1, 1, 0)
    return TrackResult(obj_id, (0, 0, 1, 1), box, mask, prob.astype(np.float32), 1.0, "mask")


def test_fuse_gives_overlaps_to_the_more_confident_object():
    a = np.zeros((2, 3), bool)
    a[:, :2] = True
    b = np.zeros((2, 3), bool)
    b[:, 1:] = True
    pa = np.where(a, 0.9, 0.0)
    pb = np.where(b, 0.6, 0.0)
    pb[0, 1] = 0.95
    label = fuse_results([_result(0, a, pa), _result(1, b, pb)], (2, 3), [1, 2])
    np.testing.assert_array_equal(label, [[1, 2, 2], [1, 1, 2]])


# Whole folders ---------------------------------------------------------------------------------


def test_folder_scores_equal_the_official_evaluation(tmp_path):
    seqs = palette_sequences()
    root = write_davis(tmp_path / "davis", seqs, pred_root=tmp_path / "pred")
    results = evaluate_davis(root, pred_dir=tmp_path / "pred")
    objects = [o for s in results["sequences"].values() for o in s["objects"].values()]
    assert len(objects) == 3
    for m in "JF":
        for stat in ("mean", "recall", "decay"):
            assert [o[m][stat] for o in objects] == pytest.approx(OFFICIAL_FOLDER[m][stat], abs=1e-12)
    for key, value in OFFICIAL_FOLDER_MEANS.items():
        assert results["summary"][key] == pytest.approx(value, abs=1e-12)
    assert results["sequences"]["seqa"]["scored_frames"] == 6  # 8 frames, first and last not scored


class OracleTracker:
    """Returns the ground-truth masks (or empty ones): checks the harness wiring, not a tracker."""

    model_name = arch = "oracle"
    precision = "n/a"
    device = "cpu"
    preset = None

    def __init__(self, labels, ids, empty=False):
        self.labels, self.ids, self.empty = labels, ids, empty
        self.t = 0
        self.init_boxes = None

    def init(self, frame, boxes):
        self.t = 0
        self.init_boxes = boxes
        return list(range(len(boxes)))

    def track(self, frame):
        self.t += 1
        out = []
        for k, i in enumerate(self.ids):
            mask = (self.labels[self.t] == i) & (not self.empty)
            out.append(_result(k, mask, mask.astype(np.float32)))
        return out


def test_tracking_with_a_perfect_tracker_scores_one_and_skips_first_and_last(tmp_path):
    seqs = {"seqb": palette_sequences()["seqb"]}
    labels = [np.where(g == 255, 0, g) for g in seqs["seqb"][0]]
    root = write_davis(tmp_path / "davis", seqs)
    oracle = OracleTracker(labels, [1])
    results = evaluate_davis(root, oracle)
    seq = results["sequences"]["seqb"]
    assert seq["objects"]["1"]["J_per_frame"] == [1.0] * 4
    assert seq["scored_frame_names"] == ["00001", "00002", "00003", "00004"]
    assert results["summary"]["JF_mean"] == 1.0
    assert oracle.init_boxes == [(40.0, 20.0, 60.0, 50.0)]  # inclusive box of the first mask
    assert results["meta"]["tracked_frames"] == 5


def test_tracking_with_an_empty_tracker_scores_zero(tmp_path):
    seqs = {"seqb": palette_sequences()["seqb"]}
    root = write_davis(tmp_path / "davis", seqs, binary=True)
    labels = [(g > 0).astype(np.uint8) for g in seqs["seqb"][0]]
    results = evaluate_davis(root, OracleTracker(labels, [1], empty=True))
    assert results["summary"]["J_mean"] == 0.0 and results["summary"]["F_mean"] == 0.0


def test_saved_masks_rescore_identically_and_outputs_are_deterministic(tmp_path):
    seqs = palette_sequences()
    root = write_davis(tmp_path / "davis", seqs, pred_root=tmp_path / "pred")
    first = evaluate_davis(root, pred_dir=tmp_path / "pred")
    again = evaluate_davis(root, pred_dir=tmp_path / "pred")
    write_results(first, tmp_path / "a")
    write_results(again, tmp_path / "b")
    assert (tmp_path / "a" / "results.json").read_bytes() == (tmp_path / "b" / "results.json").read_bytes()
    data = json.loads((tmp_path / "a" / "results.json").read_text())
    assert set(data["summary"]) >= {"J_mean", "J_recall", "J_decay", "F_mean", "F_recall", "F_decay", "JF_mean"}
    assert "| **overall** |" in (tmp_path / "a" / "results.md").read_text()


def test_a_results_write_that_fails_midway_keeps_the_earlier_results(tmp_path, monkeypatch):
    seqs = palette_sequences()
    root = write_davis(tmp_path / "davis", seqs, pred_root=tmp_path / "pred")
    results = evaluate_davis(root, pred_dir=tmp_path / "pred")
    write_results(results, tmp_path / "out")
    before = (tmp_path / "out" / "results.json").read_bytes()
    real_write_text = Path.write_text

    def disk_full(self, text, *args, **kwargs):  # half the text reaches the disk, then ENOSPC
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    results["summary"]["J_mean"] = 0.5
    with pytest.raises(OSError, match="No space"):
        write_results(results, tmp_path / "out")
    monkeypatch.undo()
    assert (tmp_path / "out" / "results.json").read_bytes() == before
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.suffix == ".tmp"]


def test_prediction_errors_are_one_line(tmp_path):
    seqs = palette_sequences()
    root = write_davis(tmp_path / "davis", seqs, pred_root=tmp_path / "pred")
    bad = np.full((90, 160), 3, np.uint8)
    Image.fromarray(bad).save(tmp_path / "pred" / "seqa" / "00002.png")
    with pytest.raises(SiamtrackError, match="object index 3"):
        evaluate_davis(root, pred_dir=tmp_path / "pred")
    (tmp_path / "pred" / "seqa" / "00002.png").unlink()
    with pytest.raises(SiamtrackError, match="missing prediction"):
        evaluate_davis(root, pred_dir=tmp_path / "pred")
    with pytest.raises(SiamtrackError, match="not found"):
        evaluate_davis(root, pred_dir=tmp_path / "pred", sequences=["nope"])


def test_split_files_of_both_davis_packages(tmp_path):
    from siamtrack.eval.harness import split_sequences

    sets = tmp_path / "ImageSets"
    (sets / "480p").mkdir(parents=True)
    (sets / "480p" / "val.txt").write_text(
        "/JPEGImages/480p/blackswan/00000.jpg /Annotations/480p/blackswan/00000.png\n"
        "/JPEGImages/480p/blackswan/00001.jpg /Annotations/480p/blackswan/00001.png\n"
        "/JPEGImages/480p/bmx-trees/00000.jpg /Annotations/480p/bmx-trees/00000.png\n")
    assert split_sequences(tmp_path, "val") == ["blackswan", "bmx-trees"]
    (sets / "2017").mkdir()
    (sets / "2017" / "train.txt").write_text("bear\nbike-packing\n\n")
    assert split_sequences(tmp_path, "train") == ["bear", "bike-packing"]
    with pytest.raises(SiamtrackError, match="no test.txt"):
        split_sequences(tmp_path, "test")


def long_sequence(tmp_path, n_frames=302):
    """A binary DAVIS sequence of ``n_frames`` tiny frames predicted perfectly for the first 150
    scored frames and not at all after (so J and F decay by exactly 1)."""
    gt = ellipse((24, 32), 12, 16, 8, 10)
    labels = [gt.astype(np.uint8)] * n_frames
    preds = [gt.astype(np.uint8) * 255 if t <= 150 else np.zeros_like(gt, np.uint8) for t in range(n_frames)]
    return write_davis(tmp_path / "davis", {"long": (labels, preds)}, pred_root=tmp_path / "pred", binary=True)


def test_eval_davis_command_scores_300_frames_with_a_finite_decay(tmp_path):
    from click.testing import CliRunner

    from siamtrack.cli import cli

    root = long_sequence(tmp_path)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["eval", "davis", str(root), "--pred", str(tmp_path / "pred"), "--out", str(out),
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert results["sequences"]["long"]["scored_frames"] == 300
    assert results["summary"]["J_decay"] == 1.0 and results["summary"]["F_decay"] == 1.0
    assert results["summary"]["J_mean"] == 0.5


def test_eval_command_keeps_results_with_non_finite_values_as_null(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from siamtrack.cli import cli
    from siamtrack.eval import harness

    real = harness.evaluate_davis

    def with_nan(*args, **kwargs):
        results = real(*args, **kwargs)
        results["summary"]["J_decay"] = float("nan")
        results["sequences"]["seqa"]["objects"]["1"]["J_per_frame"][2] = float("inf")
        return results

    monkeypatch.setattr(harness, "evaluate_davis", with_nan)
    root = write_davis(tmp_path / "davis", palette_sequences(), pred_root=tmp_path / "pred")
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["eval", "davis", str(root), "--pred", str(tmp_path / "pred"), "--out", str(out),
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    assert "2 value(s) were not finite" in res.output and "summary.J_decay" in res.output
    results = json.loads((out / "results.json").read_text())
    assert results["summary"]["J_decay"] is None
    assert results["summary"]["J_mean"] == pytest.approx(OFFICIAL_FOLDER_MEANS["J_mean"], abs=1e-12)
    assert results["sequences"]["seqa"]["objects"]["1"]["J_per_frame"][2] is None
    assert "| **-** |" in (out / "results.md").read_text()


def test_eval_command_checks_its_output_folder_before_evaluating(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from siamtrack.cli import cli
    from siamtrack.eval import harness

    calls = []
    monkeypatch.setattr(harness, "evaluate_davis", lambda *a, **k: calls.append(a))
    root = write_davis(tmp_path / "davis", palette_sequences(), pred_root=tmp_path / "pred")
    (tmp_path / "file").write_text("")
    res = CliRunner().invoke(cli, ["eval", "davis", str(root), "--pred", str(tmp_path / "pred"), "--out",
                                   str(tmp_path / "file" / "sub"), "--quiet"])
    assert res.exit_code == 1 and "cannot write" in res.output and res.output.count("\n") == 1
    assert calls == []


def test_failed_evaluation_leaves_no_empty_results_folder(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from siamtrack.cli import cli

    monkeypatch.chdir(tmp_path)
    root = write_davis(tmp_path / "davis", palette_sequences(), pred_root=tmp_path / "pred")
    res = CliRunner().invoke(cli, ["eval", "davis", str(root), "--pred", str(tmp_path / "pred"), "--sequences",
                                   "nope", "--quiet"])
    assert res.exit_code == 1 and "nope" in res.output
    assert not (tmp_path / "runs" / "eval-davis").exists()


# Box success AUC on DAVIS ---------------------------------------------------------------------


class BoxTracker:
    """Answers with each object's ground-truth bounding box moved right by ``shift`` of its width (None,
    lost, where the object is absent) and an empty mask: box AUC must come from the boxes alone."""

    model_name = arch = "boxes"
    precision = "n/a"
    device = "cpu"
    preset = None

    def __init__(self, labels, ids, shift=0.0):
        self.labels, self.ids, self.shift = labels, ids, shift
        self.t = 0

    def init(self, frame, boxes):
        self.t = 0
        return list(range(len(boxes)))

    def track(self, frame):
        from siamtrack.io.annotations import mask_box

        self.t += 1
        out = []
        for k, i in enumerate(self.ids):
            box = mask_box(self.labels[self.t] == i)
            if box is not None:
                box = (box[0] + self.shift * box[2], *box[1:])
            empty = np.zeros(self.labels[self.t].shape, bool)
            out.append(TrackResult(k, box, None, empty, empty.astype(np.float32), 1.0, "box"))
        return out


@pytest.mark.parametrize("shift,auc", [(0.0, 20 / 21), (0.5, 7 / 21)])  # IoU 1 (above all but 1.0), 1/3
def test_davis_box_auc_scores_the_trackers_boxes_against_the_mask_boxes(tmp_path, shift, auc):
    seqs = {"seqa": palette_sequences()["seqa"]}
    root = write_davis(tmp_path / "davis", seqs)
    labels = [np.where(g == 255, 0, g) for g in seqs["seqa"][0]]
    results = evaluate_davis(root, BoxTracker(labels, [1, 2], shift))
    objects = results["sequences"]["seqa"]["objects"]
    assert objects["1"]["box_auc"] == pytest.approx(auc)
    # object 2 is absent in frames 4 and 5: no ground-truth box there, so those frames count as misses
    assert objects["2"]["box_overlaps"][3:5] == [None, None]
    assert objects["2"]["box_auc"] == pytest.approx(auc * 4 / 6)
    assert results["summary"]["box_auc"] == pytest.approx((auc + auc * 4 / 6) / 2)
    assert results["sequences"]["seqa"]["box_auc"] == pytest.approx(results["summary"]["box_auc"])
    assert results["summary"]["J_mean"] < 0.5  # the masks are empty: J and F do not see the boxes


def test_davis_box_auc_of_existing_masks_uses_their_bounding_boxes(tmp_path):
    from siamtrack.eval.boxes import box_polygon, polygon_iou
    from siamtrack.io.annotations import mask_box

    seqs = {"seqb": palette_sequences()["seqb"]}
    root = write_davis(tmp_path / "davis", seqs, pred_root=tmp_path / "pred")
    results = evaluate_davis(root, pred_dir=tmp_path / "pred")
    gts, preds = seqs["seqb"]
    expected = [polygon_iou(box_polygon(mask_box(preds[t] == 1)), box_polygon(mask_box(gts[t] == 1)))
                for t in range(1, 5)]
    assert results["sequences"]["seqb"]["objects"]["1"]["box_overlaps"] == pytest.approx(expected)
    assert 0.3 < min(expected) < max(expected) < 0.9  # the case is not trivial
