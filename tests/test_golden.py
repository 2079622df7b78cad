"""Equivalence with the official SiamMask tracker (golden data recorded from the reference code).

Tolerances follow ../shared/golden/README.md: exact crops, anchors, window and integer
decisions; network arrays to 1e-3 / 1e-4; state to 1e-3 px per step; masks IoU >= 0.99;
polygons up to cyclic vertex order within 1.5 px. The same tolerances hold for the network
exported to ONNX and run by ONNX Runtime (``backend="onnxruntime"``, fp32).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache

import cv2
import numpy as np
import pytest
import torch

from siamtrack import geometry as geo
from siamtrack.api import from_checkpoint
from siamtrack.tracker import Tracker
from tests.conftest import GOLDEN

CASES = [("davis", "tennis"), ("davis", "bag"), ("davis", "tennis_corner"), ("vot", "tennis"), ("vot", "bag")]


@cache
def trajectory(config: str, seq: str) -> dict:
    return json.loads((GOLDEN / config / seq / "trajectory.json").read_text())


@cache
def frames(seq: str) -> tuple[np.ndarray, ...]:
    name = "bag" if seq == "bag" else "tennis"
    ext = "png" if name == "bag" else "jpg"
    return tuple(cv2.imread(str(GOLDEN / "inputs" / name / f"{i:05d}.{ext}")) for i in range(30))


@pytest.fixture(scope="module")
def make_tracker(golden_checkpoint):
    def make(config: str, precision: str = "fp32", backend: str = "torch") -> Tracker:
        return from_checkpoint(golden_checkpoint, preset=config, device="cpu", precision=precision,
                               backend=backend)

    return make


def polygon_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Max corner distance between two quadrilaterals, up to cyclic order of the vertices."""
    a, b = np.asarray(a, float).reshape(4, 2), np.asarray(b, float).reshape(4, 2)
    return min(float(np.abs(np.roll(a, k, axis=0) - b).max()) for k in range(4))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


@pytest.mark.parametrize("seq", ["tennis", "bag"])
def test_frames_decode_as_recorded(golden_dir, seq):
    recorded = trajectory("davis", seq)["frame_md5_bgr"]
    for i, frame in enumerate(frames(seq)):
        assert hashlib.md5(frame.tobytes()).hexdigest() == recorded[i], f"frame {i} decodes differently"


@pytest.mark.parametrize("config,seq", CASES)
def test_raw_outputs_first_frame(golden_dir, make_tracker, config, seq):
    traj = trajectory(config, seq)
    raw = GOLDEN / config / seq / "raw_frame1"
    fr = frames(seq)
    tracker = make_tracker(config)
    net = tracker.net.net
    tracker.init(fr[0], traj["init_box_xywh"])
    st = tracker.states[0]
    assert geo.exemplar_side(st.size) == traj["init"]["s_z"]
    np.testing.assert_allclose(tracker._avg_chans, traj["init"]["avg_chans_bgr"], rtol=0, atol=1e-9)

    z = geo.context_crop(fr[0], st.center, geo.exemplar_side(st.size), 127, tracker._avg_chans)
    np.testing.assert_array_equal(z, np.load(raw / "z_crop_u8.npy")[0].transpose(1, 2, 0))
    side = geo.search_side(st.size)
    x = geo.context_crop(fr[1], st.center, side, 255, tracker._avg_chans)
    np.testing.assert_array_equal(x, np.load(raw / "x_crop_u8.npy")[0].transpose(1, 2, 0))
    np.testing.assert_array_equal(geo.generate_anchors(), np.load(raw / "anchors.npy"))
    np.testing.assert_allclose(geo.cosine_window(), np.load(raw / "window.npy"), rtol=0, atol=1e-12)

    with torch.inference_mode():
        zt = torch.from_numpy(z).permute(2, 0, 1)[None].float()
        np.testing.assert_allclose(net.template_features(zt).numpy(), np.load(raw / "template_feature.npy"),
                                   rtol=1e-4, atol=1e-3)
        kernels = net.template(zt)
        cls, loc, feats = net.heads(net.backbone(torch.from_numpy(x).permute(2, 0, 1)[None].float()), kernels)
    np.testing.assert_allclose(cls.numpy(), np.load(raw / "cls_raw.npy"), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(loc.numpy(), np.load(raw / "loc_raw.npy"), rtol=1e-4, atol=1e-3)

    step = traj["steps"][0]
    tracker.track(fr[1])
    rec = tracker.last_steps[0]
    np.testing.assert_allclose(rec.score, np.load(raw / "score.npy"), rtol=0, atol=1e-5)
    np.testing.assert_allclose(rec.penalty, np.load(raw / "penalty.npy"), rtol=0, atol=1e-5)
    np.testing.assert_allclose(rec.pscore, np.load(raw / "pscore.npy"), rtol=0, atol=1e-5)
    assert (rec.best_id, rec.best_row, rec.best_col) == (step["best_pscore_id"], step["best_row_y"],
                                                          step["best_col_x"])
    delta = loc.numpy().reshape(4, -1)
    np.testing.assert_allclose(geo.decode_boxes(delta, geo.generate_anchors()),
                               np.load(raw / "delta_decoded.npy"), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(feats.corr[0, :, rec.best_row, rec.best_col].numpy(),
                               np.load(raw / "corr_feature_at_best.npy"), rtol=1e-4, atol=1e-3)
    with torch.inference_mode():
        logits = net.refine(feats, torch.tensor([rec.best_row]), torch.tensor([rec.best_col]))[0].numpy()
    np.testing.assert_allclose(logits, np.load(raw / "refine_logits.npy"), rtol=0, atol=1e-3)
    np.testing.assert_allclose(rec.mask127, np.load(raw / "refine_prob.npy"), rtol=0, atol=1e-4)
    h, w = fr[1].shape[:2]
    warped = geo.warp_mask_to_frame(rec.mask127, geo.mask_window(rec.crop_box, rec.best_row, rec.best_col), (w, h))
    np.testing.assert_allclose(warped, np.load(raw / "mask_in_img.npy"), rtol=0, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("config,seq", CASES)
def test_raw_outputs_first_frame_onnxruntime(golden_dir, make_tracker, config, seq):
    """The exported graphs on the recorded crops: the recorded score and box maps, correlation vector
    and refine logits, to the network tolerances."""
    traj = trajectory(config, seq)
    raw = GOLDEN / config / seq / "raw_frame1"
    step = traj["steps"][0]
    net = make_tracker(config, "fp32", "onnxruntime").net
    z = torch.from_numpy(np.load(raw / "z_crop_u8.npy")).float()
    x = torch.from_numpy(np.load(raw / "x_crop_u8.npy")).float()
    cls, loc, feats = net.heads(net.backbone(x), net.template(z))
    np.testing.assert_allclose(cls.numpy(), np.load(raw / "cls_raw.npy"), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(loc.numpy(), np.load(raw / "loc_raw.npy"), rtol=1e-4, atol=1e-3)
    row, col = step["best_row_y"], step["best_col_x"]
    np.testing.assert_allclose(feats.corr[0, :, row, col].numpy(), np.load(raw / "corr_feature_at_best.npy"),
                               rtol=1e-4, atol=1e-3)
    logits = net.refine(feats, torch.tensor([row]), torch.tensor([col]))[0].numpy()
    np.testing.assert_allclose(logits, np.load(raw / "refine_logits.npy"), rtol=0, atol=1e-3)


def check_step(result, tracker, step, config, seq) -> None:
    rec = tracker.last_steps[0]
    f = step["frame"]
    assert (rec.best_id, rec.best_row, rec.best_col) == (step["best_pscore_id"], step["best_row_y"],
                                                          step["best_col_x"]), f"frame {f}"
    assert rec.crop_box[2] == step["crop_box"][2], f"frame {f}: search side"
    np.testing.assert_allclose(rec.crop_box[:2], step["crop_box"][:2], rtol=0, atol=1e-3)
    np.testing.assert_allclose(rec.unclipped_center, step["unclipped"]["target_pos"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(rec.unclipped_size, step["unclipped"]["target_sz"], rtol=0, atol=1e-3)
    st = tracker.states[0]
    np.testing.assert_allclose(st.center, step["post"]["target_pos"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(st.size, step["post"]["target_sz"], rtol=0, atol=1e-3)
    assert result.score == pytest.approx(step["best_score"], abs=1e-5)
    expected_source = "mask" if step["polygon_source"].startswith("minAreaRect") else "box"
    assert result.polygon_source == expected_source
    assert polygon_distance(result.rotated.points, step["polygon"]) <= 1.5, f"frame {f}"
    golden_mask = cv2.imread(str(GOLDEN / config / seq / "masks" / f"{f:05d}.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert iou(golden_mask, result.mask) >= 0.99, f"frame {f}"
    assert abs(result.mask_area - step["mask_area_px"]) <= max(1, 0.005 * step["mask_area_px"])


@pytest.mark.slow
@pytest.mark.parametrize("config,seq", CASES)
def test_teacher_forced_steps(golden_dir, make_tracker, config, seq):
    """Each step from the recorded state, on the reference path (``fp32-reference``). The fast fp32
    path is proved on the same records by the free runs below (torch and ONNX Runtime), which check
    every step as this does (teacher-forcing it as well cost five more runs of the official network)."""
    traj = trajectory(config, seq)
    fr = frames(seq)
    tracker = make_tracker(config, "fp32-reference")
    tracker.init(fr[0], traj["init_box_xywh"])
    for step in traj["steps"]:
        st = tracker.states[0]
        st.center = np.array(step["pre"]["target_pos"], dtype=np.float64)
        st.size = np.array(step["pre"]["target_sz"], dtype=np.float64)
        (result,) = tracker.track(fr[step["frame"]])
        check_step(result, tracker, step, config, seq)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])  # onnxruntime: the ONNX export, fp32
@pytest.mark.parametrize("config,seq", CASES)
def test_free_run_trajectory(golden_dir, make_tracker, config, seq, backend):
    check_free_run(make_tracker(config, backend=backend), config, seq)


def check_free_run(tracker: Tracker, config: str, seq: str) -> None:
    """Every step of the recorded sequence, from its first box, within the tolerances."""
    traj = trajectory(config, seq)
    fr = frames(seq)
    tracker.init(fr[0], traj["init_box_xywh"])
    for step in traj["steps"]:
        (result,) = tracker.track(fr[step["frame"]])
        check_step(result, tracker, step, config, seq)


@pytest.fixture(scope="module")
def pysot_checkpoint(tmp_path_factory, golden_dir):
    """The same synthetic tensors under PySOT's key names (tests the renaming on load)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("pysot") / "siammask_r50_l3.pth"
    subprocess.run([sys.executable, str(golden_dir / "make_checkpoint.py"), str(out), "--keys",
                    str(golden_dir / "keys_pysot_siammask.json"), "--layout", "flat"], check=True,
                   capture_output=True)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("seq", ["tennis", "bag"])
def test_pysot_style_free_run(golden_dir, pysot_checkpoint, seq):
    traj = json.loads((GOLDEN / "pysot" / seq / "trajectory.json").read_text())
    raw = GOLDEN / "pysot" / seq / "raw_frame1"
    fr = frames(seq)
    tracker = from_checkpoint(pysot_checkpoint, preset="pysot", device="cpu", precision="fp32")
    tracker.init(fr[0], traj["init_box_xywh"])
    np.testing.assert_allclose(tracker.states[0].center, traj["init"]["center_pos"], atol=1e-9)
    for step in traj["steps"]:
        f = step["frame"]
        (result,) = tracker.track(fr[f])
        rec = tracker.last_steps[0]
        assert rec.best_id == step["best_idx"], f"frame {f}"
        assert rec.crop_box[2] == step["crop_box"][2]
        np.testing.assert_allclose(rec.crop_box[:2], step["crop_box"][:2], atol=1e-3)
        st = tracker.states[0]
        np.testing.assert_allclose(st.center, step["post"]["center_pos"], atol=1e-3)
        np.testing.assert_allclose(st.size, step["post"]["size"], atol=1e-3)
        np.testing.assert_allclose(result.box, step["bbox_xywh"], atol=1e-3)
        assert polygon_distance(result.rotated.points, step["polygon"]) <= 1.5, f"frame {f}"
        golden_mask = cv2.imread(str(GOLDEN / "pysot" / seq / "masks" / f"{f:05d}.png"), cv2.IMREAD_GRAYSCALE) > 0
        assert iou(golden_mask, result.mask) >= 0.99, f"frame {f}"
        if f == 1:
            np.testing.assert_allclose(rec.score, np.load(raw / "score.npy"), atol=1e-5)
            np.testing.assert_allclose(rec.penalty, np.load(raw / "penalty.npy"), atol=1e-5)
            np.testing.assert_allclose(rec.pscore, np.load(raw / "pscore.npy"), atol=1e-5)
            np.testing.assert_allclose(rec.mask127, np.load(raw / "refine_prob.npy"), atol=1e-4)
