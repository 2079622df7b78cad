"""The generated sample clip: exact ground truth, determinism, bounded memory, and the oracle tracker."""

from __future__ import annotations

import json
import tracemalloc

import cv2
import numpy as np
import pytest

from siamtrack.io import synthetic
from siamtrack.io.sources import open_source


def test_frames_are_deterministic_and_boxes_bound_the_masks():
    a = list(synthetic.frames(6, (160, 120), seed=3))
    b = list(synthetic.frames(6, (160, 120), seed=3))
    c = next(synthetic.frames(6, (160, 120), seed=4))
    assert all((x.image == y.image).all() and x.box == y.box for x, y in zip(a, b, strict=True))
    assert not (c.image == a[0].image).all()
    for f in a:
        assert f.image.shape == (120, 160, 3) and f.mask.shape == (120, 160) and f.mask.dtype == bool
        ys, xs = np.nonzero(f.mask)
        assert f.box == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert a[0].box != a[-1].box  # the object moves
    inside, outside = a[0].image[a[0].mask].std(), a[0].image[~a[0].mask].std()
    assert inside > 5 and outside > 5  # textured object on a textured background, not flat colours


def test_pan_stays_within_the_background_and_moves_smoothly():
    travel = 300
    offsets = [synthetic._pan(t, travel) for t in range(2000)]
    assert min(offsets) == 0 and max(offsets) == travel
    assert max(abs(a - b) for a, b in zip(offsets, offsets[1:], strict=False)) <= 2


def test_long_clips_use_constant_memory():
    """The background does not grow with the clip length (a 100k-frame clip starts like a short one)."""
    tracemalloc.start()
    next(synthetic.frames(100_000, (320, 240)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20e6


def test_make_clip_writes_video_masks_and_ground_truth(tmp_path):
    gt = synthetic.make_clip(tmp_path, n_frames=8, size=(160, 120), seed=1, fps=10)
    assert json.loads((tmp_path / "groundtruth.json").read_text()) == gt
    assert gt["frames"] == 8 and len(gt["boxes_xywh"]) == 8 and gt["init_box"] == gt["boxes_xywh"][0]
    video = open_source(tmp_path / gt["video"])
    assert video.size == (160, 120) and video.fps == 10
    decoded = [f.image for f in video]
    generated = list(synthetic.frames(8, (160, 120), seed=1))
    assert len(decoded) == 8
    for i, (img, fr) in enumerate(zip(decoded, generated, strict=True)):
        assert np.abs(img.astype(int) - fr.image).mean() < 6  # lossy, but the same frames in the same order
        png = cv2.imread(str(tmp_path / "masks" / f"{i:05d}.png"), cv2.IMREAD_UNCHANGED)
        assert ((png == 255) == fr.mask).all()
        assert list(fr.box) == gt["boxes_xywh"][i]


def test_oracle_tracker_answers_with_the_ground_truth():
    clip = list(synthetic.frames(5, (160, 120), seed=2))
    oracle = synthetic.OracleTracker(5, (160, 120), seed=2, start=1)
    assert oracle.init(clip[1].image, [clip[1].box, (5, 5, 10, 10)]) == [0, 1]
    for fr in clip[2:]:
        first, second = oracle.track(fr.image)
        assert (first.mask == fr.mask).all() and first.box == fr.box and first.polygon_source == "mask"
        assert second.box == (5, 5, 10, 10) and second.mask_area == 100
        # the rotated box hugs the elliptical cut-out: area ratio near 4/pi
        assert 1.1 < first.rotated.w * first.rotated.h / fr.mask.sum() < 1.45
    with pytest.raises(StopIteration):
        oracle.track(clip[0].image)  # past the end of the clip


@pytest.mark.parametrize("kind", synthetic.SCENARIOS)
def test_scenario_clips_hide_the_object_on_the_given_frames(kind):
    clip = list(synthetic.scenario(kind, n=30, size=(320, 180), seed=0, hidden=(10, 20)))
    assert [t for t, f in enumerate(clip) if f.visible == 0] == list(range(10, 20))
    for f in clip:
        assert f.mask.any() == (f.visible > 0)
        if f.visible == 0:
            assert f.box == (0.0, 0.0, 0.0, 0.0)
    assert clip[0].visible > 0.95 and clip[-1].visible > 0.95  # the fraction is of the warped sprite area
    assert 0 < clip[8].visible < 1 or 0 < clip[9].visible < 1  # it goes out of view gradually
    with pytest.raises(ValueError, match="unknown scenario"):
        next(synthetic.scenario("vanish"))


def test_the_distractor_appears_only_while_the_object_is_hidden():
    occl = list(synthetic.scenario("occlusion", n=30, size=(320, 180), seed=0, hidden=(10, 20)))
    dist = list(synthetic.scenario("distractor", n=30, size=(320, 180), seed=0, hidden=(10, 20)))
    assert (occl[9].image == dist[9].image).all()
    right = np.s_[:, 240:]  # the look-alike stands near the right edge, away from the object
    assert np.abs(occl[15].image[right].astype(int) - dist[15].image[right]).mean() > 5
