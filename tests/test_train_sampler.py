"""Data multiplication for small data: elastic warps, pasted targets, and the geometry of
augmented pairs (the box target must stay the box of the mask target)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from siamtrack.train import datasets as ds
from siamtrack.train.sampler import AugmentConfig, DatasetSpec, PairSampler, elastic_warp

STILL = dict(template_shift=0, template_scale=0, search_shift=0, search_scale=0, blur=0, gray=0, flip=0,
             color=0, affine=0, distractor=0)


def _object_frame(i: int) -> tuple[np.ndarray, np.ndarray]:
    """A red ellipse on a blue background, moving a little with i."""
    img = np.zeros((200, 300, 3), np.uint8)
    img[:] = (200, 40, 40)
    mask = np.zeros((200, 300), np.uint8)
    cv2.ellipse(mask, (140 + 2 * i, 100 + i), (35, 25), 20, 0, 360, 255, -1)
    img[mask > 0] = (30, 30, 220)
    return img, mask


def _track(folder: Path, name: str, n: int, frame_fn) -> ds.Track:
    folder.mkdir(parents=True, exist_ok=True)
    frames, masks, boxes = [], [], []
    for i in range(n):
        img, mask = frame_fn(i)
        fp, mp = folder / f"{i:05d}.png", folder / f"{i:05d}_m.png"
        cv2.imwrite(str(fp), img)
        cv2.imwrite(str(mp), mask)
        frames.append(fp)
        masks.append(mp)
        boxes.append(ds.mask_box(mask))
    return ds.Track(name, frames, np.asarray(boxes, float), masks)


def _plain_green(i: int) -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((240, 320), np.uint8)
    mask[100:140, 100:150] = 255
    return np.full((240, 320, 3), (40, 180, 40), np.uint8), mask


def test_elastic_warp_moves_image_and_mask_together():
    img, mask = _object_frame(0)
    box = np.asarray(ds.mask_box(mask))
    out, wmask, wbox = elastic_warp(np.random.default_rng(3), img, mask, box, 0.1)
    assert out.shape == img.shape and wmask.shape == mask.shape
    np.testing.assert_array_equal(wbox, ds.mask_box(wmask))
    fg, wfg = mask > 0, wmask > 0
    iou = np.count_nonzero(fg & wfg) / np.count_nonzero(fg | wfg)
    assert 0.4 < iou < 0.98  # a new shape of the same object
    red = out[..., 2] > 128
    assert np.count_nonzero(red == wfg) / red.size > 0.99  # the object's pixels went where its mask went


def test_pasted_target_sits_on_another_frame(tmp_path):
    source = _track(tmp_path / "src", "src", 2, _object_frame)
    background = _track(tmp_path / "bg", "bg", 2, _plain_green)
    sampler = PairSampler([DatasetSpec("bg", [background], 1.0, 1)], augment=AugmentConfig(**STILL), seed=0)
    img, mask = _object_frame(0)
    out, new_mask, new_box = sampler._paste_target(np.random.default_rng(1), img, mask, source.boxes[0])
    green = np.array((40, 180, 40), np.uint8)
    fg = new_mask > 127
    assert np.all(out[~fg] == green)  # everything but the object is the other frame
    assert np.mean(out[fg][:, 2] > 128) > 0.95  # the object keeps its own pixels
    np.testing.assert_array_equal(new_box, ds.mask_box(new_mask))
    ratio = np.count_nonzero(fg) / np.count_nonzero(mask)
    assert np.exp(-0.6) * 0.9 < ratio < np.exp(0.6) * 1.1


def test_box_target_stays_the_box_of_the_mask_target(tmp_path):
    track = _track(tmp_path / "t", "t", 8, _object_frame)
    background = _track(tmp_path / "bg", "bg", 2, _plain_green)
    aug = AugmentConfig(**{**STILL, "search_shift": 64.0, "search_scale": 0.18, "affine": 0.5, "elastic": 0.5,
                           "paste": 0.5, "flip": 0.5, "color": 0.4, "blur": 0.2})
    sampler = PairSampler([DatasetSpec("t", [track], 1.0, 3), DatasetSpec("bg", [background], 0.3, 1)],
                          neg_prob=0.0, augment=aug, seed=11)
    checked = 0
    for i in range(40):
        pair = sampler.pair(i)
        if pair.mask is None:
            continue
        mb = ds.mask_box(pair.mask)
        assert mb is not None, i
        x, y, w, h = mb
        np.testing.assert_allclose(pair.box, [x, y, x + w, y + h], atol=2.5, err_msg=str(i))
        checked += 1
    assert checked > 20


def test_negative_pairs_search_another_track(tmp_path):
    a = _track(tmp_path / "a", "a", 3, _object_frame)
    b = _track(tmp_path / "b", "b", 3, _plain_green)
    sampler = PairSampler([DatasetSpec("a", [a], 1.0, 1), DatasetSpec("b", [b], 1.0, 1)], neg_prob=1.0,
                          augment=AugmentConfig(**STILL), seed=5)
    for i in range(30):
        pair = sampler.pair(i)
        assert pair.negative and pair.mask is None
        template_is_a = pair.template[63, 63, 2] > 128  # the red object of track a at the template centre
        search_is_a = np.any(pair.search[..., 2] > 128)  # no red anywhere in track b's frames
        assert template_is_a != search_is_a, i


def test_augment_stage_changes_only_the_pairs_from_its_first_index(tmp_path):
    track = _track(tmp_path / "t", "t", 6, _object_frame)
    spec = [DatasetSpec("t", [track], 1.0, 3)]
    base = AugmentConfig(**STILL)
    plain = PairSampler(spec, augment=base, neg_prob=0.0, seed=3)
    staged = PairSampler(spec, augment=base, neg_prob=0.0, seed=3,
                         stages=[(10, AugmentConfig(**{**STILL, "affine": 1.0}))])
    for i in range(10):
        np.testing.assert_array_equal(plain.pair(i).search, staged.pair(i).search)
    assert any(not np.array_equal(plain.pair(i).search, staged.pair(i).search) for i in range(10, 14))


def test_occluder_hides_part_of_the_target_and_the_mask_leaves_it_out(tmp_path):
    """An occluder lands on the target's outline: the mask loses the covered pixels, at most 60 % of them."""
    track = _track(tmp_path / "t", "t", 4, _object_frame)
    green = _track(tmp_path / "g", "g", 2, _plain_green)
    spec = [DatasetSpec("t", [track], 1.0, 1), DatasetSpec("g", [green], 1e-9, 1)]
    plain = PairSampler(spec, augment=AugmentConfig(**STILL), neg_prob=0.0, seed=4)
    occluded = PairSampler(spec, augment=AugmentConfig(**{**STILL, "occluder": 1.0}), neg_prob=0.0, seed=4)
    covered = []
    for i in range(12):
        a, b = plain.pair(i), occluded.pair(i)
        np.testing.assert_array_equal(a.template, b.template)
        assert np.all(b.mask <= a.mask)
        covered.append(1 - b.mask.sum() / a.mask.sum())
        changed = np.any(a.search != b.search, axis=2)
        x1, y1, x2, y2 = (int(v) for v in a.box)
        assert changed[y1:y2, x1:x2].any(), i  # the pasted object touches the target's box
    assert np.mean(covered) > 0.05 and max(covered) <= 0.6
