"""The Tracker's public API on small generated frames, with the synthetic checkpoint.

The synthetic weights do not track anything real; these tests check the contract (types,
shapes, ids, colour handling, user errors, clipping, profiling), not accuracy.
Each track step costs a few tenths of a second, so every test runs only a few.
"""

from __future__ import annotations

import json
import math
import warnings

import cv2
import numpy as np
import pytest
import torch

from siamtrack import geometry as geo
from siamtrack.api import build_tracker
from siamtrack.errors import SiamtrackError
from siamtrack.results import BoxClippedWarning, TrackResult, frame_outputs, output_box
from siamtrack.tracker import Tracker
from siamtrack.weights.loading import load_checkpoint

W, H = 320, 240
BACKGROUND = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
SQUARE = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
BLACK = np.zeros((H, W, 3), dtype=np.uint8)


def frame_with_square(x: int, y: int) -> np.ndarray:
    """The textured background with a 40x40 textured square at (x, y) (top-left)."""
    frame = BACKGROUND.copy()
    frame[y : y + 40, x : x + 40] = SQUARE
    return frame


MOVING = [frame_with_square(100 + 4 * i, 80 + 2 * i) for i in range(3)]
START_BOX = (100, 80, 40, 40)


@pytest.fixture(scope="module")
def model(synthetic_checkpoint):
    return load_checkpoint(synthetic_checkpoint).model


@pytest.fixture(scope="module")
def tracker(model) -> Tracker:
    """One fp32 CPU tracker for the module; every test calls ``init`` first."""
    return build_tracker(model, "davis", device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def tracked(tracker) -> list[TrackResult]:
    """Results of two steps of the moving square."""
    tracker.init(MOVING[0], START_BOX)
    return [tracker.track(frame)[0] for frame in MOVING[1:]]


def assert_valid_result(result: TrackResult, obj_id: int) -> None:
    assert result.obj_id == obj_id
    assert result.mask.shape == (H, W) and result.mask.dtype == bool
    assert result.mask_prob.shape == (H, W) and result.mask_prob.dtype == np.float32
    assert result.mask_prob.min() >= 0.0 and result.mask_prob.max() <= 1.0
    assert result.rotated.points.shape == (4, 2) and np.all(np.isfinite(result.rotated.points))
    assert len(result.box) == 4 and all(math.isfinite(v) for v in result.box)
    assert 0.0 <= result.score <= 1.0
    assert result.polygon_source in ("mask", "box")


def assert_state_in_frame(tracker: Tracker) -> None:
    for st in tracker.states:
        assert np.all(np.isfinite(st.center)) and np.all(np.isfinite(st.size))
        assert 0 <= st.center[0] <= W and 0 <= st.center[1] <= H
        assert 10 <= st.size[0] <= W and 10 <= st.size[1] <= H


# init and track ------------------------------------------------------------------------------------


def test_init_returns_ids(tracker):
    assert tracker.init(MOVING[0], START_BOX) == [0]
    assert tracker.init(MOVING[0], np.array(START_BOX, dtype=np.float32)) == [0]
    assert tracker.init(MOVING[0], [START_BOX, (10, 20, 30, 30), (200, 150, 50, 60)]) == [0, 1, 2]
    assert tracker.init(MOVING[0], np.array([(200, 150, 50, 60), (10, 20, 30, 30)])) == [0, 1]
    # the state is the box centre and size
    np.testing.assert_array_equal(tracker.states[1].center, [25.0, 35.0])
    np.testing.assert_array_equal(tracker.states[1].size, [30.0, 30.0])


def test_track_several_objects(tracker):
    tracker.init(MOVING[0], [START_BOX, (200, 150, 50, 60)])
    results = tracker.track(MOVING[1])
    assert len(results) == 2
    for i, result in enumerate(results):
        assert_valid_result(result, i)
    assert results[0].box != results[1].box
    assert_state_in_frame(tracker)


def test_track_result_fields(tracked):
    for result in tracked:
        assert_valid_result(result, 0)
        assert result.mask_area == np.count_nonzero(result.mask) > 0
        x, y, w, h = result.box
        # the box is the (clipped) state, near where the target was given
        assert abs(x + w / 2 - 120) < 40 and abs(y + h / 2 - 100) < 40


def test_to_dict_is_json(tracked):
    data = tracked[-1].to_dict()
    back = json.loads(json.dumps(data))
    assert back == data
    assert set(back) == {"obj_id", "state", "box", "rotated", "score", "mask_area", "polygon_source"}
    assert len(back["rotated"]["points"]) == 4
    assert back["mask_area"] == tracked[-1].mask_area


def test_rgb_input_equals_converted_bgr(tracker):
    rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in MOVING[:2]]

    def run(frames, color):
        tracker.init(frames[0], START_BOX, color=color)
        return tracker.track(frames[1], color=color)[0]

    as_rgb = run(rgb, "rgb")
    as_bgr = run(MOVING[:2], "bgr")
    assert as_rgb.box == as_bgr.box and as_rgb.score == as_bgr.score
    np.testing.assert_array_equal(as_rgb.mask, as_bgr.mask)
    # the channel order matters: the RGB frames read as BGR give another result
    swapped = run(rgb, "bgr")
    assert swapped.box != as_bgr.box


def test_two_objects_batched_equal_single(tracker):
    """Stepping two objects in one batched forward gives each object's single-object result."""
    boxes = [START_BOX, (200, 150, 50, 60)]
    tracker.init(MOVING[0], boxes)
    pair = tracker.track(MOVING[1])
    states = [(st.center.copy(), st.size.copy()) for st in tracker.states]
    for k, box in enumerate(boxes):
        tracker.init(MOVING[0], box)
        (alone,) = tracker.track(MOVING[1])
        np.testing.assert_allclose(states[k][0], tracker.states[0].center, atol=1e-3)
        np.testing.assert_allclose(states[k][1], tracker.states[0].size, atol=1e-3)
        assert pair[k].obj_id == k and np.count_nonzero(pair[k].mask ^ alone.mask) <= 0.01 * alone.mask_area


# user errors -----------------------------------------------------------------------------------


def assert_one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert isinstance(exc.value, SiamtrackError)
    assert msg and "\n" not in msg
    return msg


@pytest.mark.parametrize("boxes,match", [
    ((100, 80, 0, 40), "zero area"),
    ((100, 80, 40, -5), "zero area"),
    ((400, 300, 20, 20), "outside the 320x240 frame"),
    ((-50, 10, 50, 20), "outside the 320x240 frame"),  # touches the frame only along its edge
    ((100, 80, 40), "4 finite numbers"),
    ((100, float("nan"), 40, 40), "4 finite numbers"),
    ([], "at least one box"),
    ([START_BOX, (0, 0, 0, 0)], "zero area"),
])
def test_bad_boxes(tracker, boxes, match):
    with pytest.raises(SiamtrackError, match=match) as exc:
        tracker.init(MOVING[0], boxes)
    assert_one_line(exc)


@pytest.mark.parametrize("frame", [
    MOVING[0].astype(np.float32),
    cv2.cvtColor(MOVING[0], cv2.COLOR_BGR2GRAY),
    cv2.cvtColor(MOVING[0], cv2.COLOR_BGR2BGRA),
    MOVING[0].astype(np.uint16),
    MOVING[0].tolist(),
], ids=["float32", "grey", "bgra", "uint16", "list"])
def test_bad_frames(tracker, frame):
    with pytest.raises(SiamtrackError, match="HxWx3 uint8") as exc:
        tracker.init(frame, START_BOX)
    assert_one_line(exc)
    tracker.init(MOVING[0], START_BOX)
    with pytest.raises(SiamtrackError, match="HxWx3 uint8"):
        tracker.track(frame)


def test_bad_color(tracker):
    with pytest.raises(SiamtrackError, match="'bgr' or 'rgb'") as exc:
        tracker.init(MOVING[0], START_BOX, color="hsv")
    assert_one_line(exc)


def test_track_before_init(model):
    fresh = build_tracker(model, "davis", device="cpu", precision="fp32-reference")
    with pytest.raises(SiamtrackError, match="before track") as exc:
        fresh.track(MOVING[0])
    assert_one_line(exc)


@pytest.mark.parametrize("kwargs,match", [
    ({"preset": "fastest"}, "unknown preset 'fastest'; known: davis, vot, vot18, pysot, lite-untuned"),
    ({"precision": "fp8"}, "unknown precision 'fp8'"),
    ({"precision": "fp16"}, "fp16 is for CUDA"),
])
def test_bad_options(model, kwargs, match):
    with pytest.raises(SiamtrackError, match=match) as exc:
        build_tracker(model, device="cpu", **kwargs)
    assert_one_line(exc)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(model):
    with pytest.raises(SiamtrackError, match="CUDA was requested") as exc:
        build_tracker(model, device="cuda")
    assert_one_line(exc)


# clipping ------------------------------------------------------------------------------------------


def test_partly_outside_box_is_clipped_with_a_warning(tracker):
    with pytest.warns(BoxClippedWarning, match="clipped to the frame: 0,0,40,40"):
        tracker.init(MOVING[0], (-20, -10, 60, 50))
    np.testing.assert_array_equal(tracker.states[0].center, [20.0, 20.0])
    np.testing.assert_array_equal(tracker.states[0].size, [40.0, 40.0])
    with pytest.warns(BoxClippedWarning):
        tracker.init(MOVING[0], (300, 200, 40, 60))
    np.testing.assert_array_equal(tracker.states[0].size, [20.0, 40.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tracker.init(MOVING[0], (0, 0, W, H))  # the whole frame is inside


def test_target_driven_out_of_the_frame(tracker):
    """Corners, black frames and a state pushed outside never give NaN or a size out of [10, frame]."""
    unclipped = []

    def step(frame):
        (result,) = tracker.track(frame)
        assert_valid_result(result, 0)
        assert_state_in_frame(tracker)
        unclipped.append(tracker.last_steps[0].unclipped_size.copy())

    tracker.with_preset(lost_state=False)  # the official step throughout: the state is what is checked
    tracker.init(frame_with_square(280, 200), (300, 226, 18, 12))  # a tiny target in the corner
    for frame in (frame_with_square(0, 0), BLACK):  # it jumps to the other corner, then is gone
        step(frame)
    tracker.states[0].center = np.array([-80.0, H + 60.0])  # as if a fast motion had carried it out
    step(BLACK)
    np.testing.assert_array_equal(tracker.states[0].center, [0.0, H])  # moves < 30 px at this size
    tracker.init(frame_with_square(140, 100), (0, 0, W, H))  # as large as the frame
    for frame in (BLACK, frame_with_square(0, 200)):
        step(frame)
    # the clamps were needed: the raw updates went below the minimum and above the frame
    sizes = np.array(unclipped)
    assert sizes.min() < 10 and sizes[:, 0].max() > W
    tracker.with_preset(lost_state=True)


# profiling -------------------------------------------------------------------------------------------


def test_profile_fills_stage_timings(tracker):
    tracker.init(MOVING[0], START_BOX)
    tracker.track(MOVING[1])
    assert not tracker.profile and tracker.last_timings == {}  # off by default: nothing measured
    tracker.profile = True
    try:
        tracker.init(MOVING[0], START_BOX)
        assert set(tracker.last_timings) == {"crop", "backbone"}
        tracker.track(MOVING[1])
    finally:
        tracker.profile = False
    timings = tracker.last_timings
    stages = ("crop", "backbone", "heads", "refine", "post")
    assert set(timings) == {*stages, "total"}
    assert all(timings[s] >= 0 for s in stages) and timings["backbone"] > 0
    assert timings["total"] == pytest.approx(sum(timings[s] for s in stages))
    tracker.track(MOVING[2])  # profiling off again: the totals must not pile up
    assert tracker.last_timings["total"] == pytest.approx(sum(timings[s] for s in stages))


def test_the_box_is_a_confident_masks_bounding_box_else_the_regressions():
    mask = np.zeros((40, 60), bool)
    mask[10:20, 5:35] = True
    prob = np.where(mask, 0.9, 0.1).astype(np.float32)
    regression = (1.0, 2.0, 3.0, 4.0)
    assert output_box(regression, mask, prob, "mask", 0.8) == (5.0, 10.0, 30.0, 10.0)
    assert output_box(regression, mask, prob, "mask", 0.95) == regression  # not confident enough
    assert output_box(regression, mask, prob, "mask", None) == regression  # the preset says never
    assert output_box(regression, mask, prob, "box", 0.0) == regression  # a box-only model's "mask" is its box
    assert output_box(regression, np.zeros_like(mask), prob, "mask", 0.0) == regression  # nothing to bound
    # the region frame_outputs reports (where the mask may be): the same box, in frame coordinates
    assert output_box(regression, mask, prob, "mask", 0.8, (2, 8, 60, 40)) == (5.0, 10.0, 30.0, 10.0)


@pytest.mark.parametrize("pad", [-1.0, 0.0])
def test_frame_outputs_of_the_masks_region_are_the_whole_frames(pad):
    """Warping, thresholding and tracing only where the window reaches gives the outputs of the
    whole frame's warp: the same mask and probabilities to the bit, the same rotated box."""
    rng = np.random.default_rng(5)
    state = (np.array([200.0, 150.0]), np.array([60.0, 40.0]))
    for _ in range(40):
        m = cv2.GaussianBlur(rng.random((127, 127)).astype(np.float32), (0, 0), 6)
        m = (m - m.min()) / (m.max() - m.min())
        side = float(rng.uniform(30, 900))
        window = (float(rng.uniform(-side, 640)), float(rng.uniform(-side, 360)), side, side)
        binary, prob, rotated, source, region = frame_outputs(m, window, state, (640, 360), 0.5, pad)
        full = geo.warp_mask_to_frame(m, window, (640, 360), border=pad)
        np.testing.assert_array_equal(binary, full > 0.5)
        np.testing.assert_array_equal(prob, np.maximum(full, 0.0))
        whole, whole_source = geo.rotated_box_from_mask((full > 0.5).astype(np.uint8), *state)
        assert source == whole_source
        np.testing.assert_allclose(rotated.points, whole.points, atol=1e-4)
        assert not binary[:, :region[0]].any() and not binary[:, region[2]:].any()
