"""siammask-nano: the mask branch's shapes and geometry (refine windows, mask windows at test and at
training time), the frozen box branch (NanoTrack v3's outputs exactly), loading by architecture,
training only the mask branch, and the tracker end to end. What needs ``../shared/pretrained``
skips without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siamtrack import geometry as geo
from siamtrack.api import build_tracker
from siamtrack.decoders import PointDecoder, decoder_for, point_grid
from siamtrack.io import synthetic
from siamtrack.models import SiamNetwork, build_model, missing_methods, nanotrack, siammask_nano, spec_of
from siamtrack.presets import PRESETS
from siamtrack.train.loop import RunConfig, TrainConfig, apply_phase, checkpoint_payload, clip_groups, compute_losses
from siamtrack.train.losses import distill_loss, iou_box_loss
from siamtrack.train.targets import grid_of, mask_windows, point_targets, targets_for
from siamtrack.weights.loading import load_checkpoint
from tests.conftest import SHARED, need

PTH = SHARED / "pretrained" / "nanotrack" / "nanotrackv3.pth"


def _seeded(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every float tensor of ``model`` redrawn from a seeded generator (BatchNorm statistics kept sane)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in model.state_dict().items():
        if not v.is_floating_point():
            state[k] = v
        elif k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=g) * 0.5 + 0.75
        else:
            state[k] = (torch.rand(v.shape, generator=g) - 0.5) * 0.2
    model.load_state_dict(state)
    return model.eval()


def _box_branch_of(model: siammask_nano.SiamMaskNano) -> nanotrack.NanoTrack:
    plain = nanotrack.build_v3()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k in plain.state_dict()})
    return plain.eval()


def _crops(seed: int = 1, n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 127, 127, generator=g) * 255, torch.rand(n, 3, 255, 255, generator=g) * 255


def _batch(z: torch.Tensor, x: torch.Tensor, t, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """A training batch of the crops ``z``, ``x`` with the same targets ``t`` and search masks ``mask``."""
    n = z.shape[0]
    return {"template": z, "search": x, "labels": torch.from_numpy(np.stack([t.labels] * n)),
            "deltas": torch.from_numpy(np.stack([t.deltas] * n)),
            "delta_weight": torch.from_numpy(np.stack([t.delta_weight] * n)),
            "mask_cells": torch.from_numpy(np.stack([t.mask_cells] * n)), "mask": mask}


def test_shapes_and_interface():
    model = build_model("siammask_nano").eval()
    assert isinstance(model, SiamNetwork) and not missing_methods(model, masks=True)
    assert model.head_type == "points" and model.arch == "siammask_nano" and model.masks
    z, x = _crops()
    with torch.no_grad():
        kernels = model.template(z)
        feats = model.backbone(x)
        cls, loc, search = model.heads(feats, kernels)
        masks = model.refine(search, torch.tensor([0, 14, 7]), torch.tensor([0, 14, 3]), torch.tensor([0, 1, 1]))
        one = model.refine(search, torch.tensor([7, 7]), torch.tensor([7, 7]))
    assert [tuple(f.shape[1:]) for f in feats] == [(16, 128, 128), (16, 64, 64), (24, 32, 32), (96, 16, 16)]
    assert cls.shape == (2, 2, 15, 15) and loc.shape == (2, 4, 15, 15)
    assert search.corr.shape == (2, 96, 15, 15) and search.mask.shape == (2, 128, 15, 15)
    assert masks.shape == (3, 127, 127) and one.shape == (2, 127, 127)
    assert torch.isfinite(masks).all()


def test_the_decoder_reads_whether_a_point_model_refines_masks():
    assert decoder_for(spec_of(build_model("siammask_nano"))).masks
    assert not decoder_for(spec_of(build_model("nanotrack_v3"))).masks
    assert isinstance(decoder_for(spec_of(build_model("siammask_nano"))), PointDecoder)


@pytest.mark.parametrize("score_size", [15, 16])
def test_a_points_mask_window_is_the_127_pixels_centred_on_it(score_size):
    dec = PointDecoder.of_size(score_size, 16, masks=True)
    points = point_grid(score_size, 16) + geo.INSTANCE_SIZE // 2  # crop pixels
    crop = (100.0, 40.0, 510, 510)  # a search crop of side 510: two frame pixels per crop pixel
    for row, col in [(0, 0), (score_size // 2, 3), (score_size - 1, score_size - 1)]:
        x0, y0, w, h = dec.mask_window(crop, row, col)
        px, py = points[row * score_size + col]
        assert w == h == 2 * geo.EXEMPLAR_SIZE
        # the window's first pixel is the point less 63 crop pixels (SiamMask's cells: the same rule)
        assert (x0, y0) == (100.0 + 2 * (px - 63), 40.0 + 2 * (py - 63))


def test_training_mask_targets_are_the_windows_the_tracker_warps_back():
    size, stride = grid_of(build_model("siammask_nano"))
    dec = PointDecoder.of_size(size, stride, masks=True)
    crop = torch.zeros(1, 255, 255)
    crop[0, 150, 90] = 1.0  # one marked crop pixel
    for row, col in [(8, 5), (9, 6), (7, 4)]:
        target = mask_windows(crop, torch.tensor([0]), torch.tensor([row]), torch.tensor([col]), size, stride)[0]
        x0, y0, _, _ = dec.mask_window((0.0, 0.0, 255, 255), row, col)
        ys, xs = np.nonzero(target.numpy())
        assert (ys.tolist(), xs.tolist()) == ([150 - int(y0)], [90 - int(x0)])


def test_refine_windows_are_centred_on_the_point():
    """A map whose value is its cell's crop pixel: each window's centre is the point, within a pixel."""
    g = siammask_nano.WINDOWS
    for (first, step, size), stride, side in zip(g, (2, 4, 8), (128, 64, 32), strict=True):
        coords = torch.arange(side, dtype=torch.float32) * stride
        feat = coords.reshape(1, 1, 1, side).expand(1, 1, side, side).contiguous()
        for col in (0, 7, 14):
            win = siammask_nano.point_windows(feat, first, step, size, torch.tensor([0]), torch.tensor([7]),
                                              torch.tensor([col]), 15)
            centre = win[0, 0, size // 2, size // 2].item()
            assert abs(centre - (16 * col + 15)) <= 1, (stride, col, centre)


def test_windows_pad_only_what_the_edge_points_need():
    """The stride-2/4/8 maps (128, 64, 32 cells) get the zero cells points 0 and 14 reach, no more, and
    the traced ``refine_at`` cuts the same windows as ``refine`` at the corners and the centre."""
    pads = [siammask_nano.window_pad(*w, side, 15) for w, side in zip(siammask_nano.WINDOWS, (128, 64, 32),
                                                                      strict=True)]
    assert pads == [(22, 23), (11, 12), (5, 6)]
    model = _seeded(build_model("siammask_nano")).eval()
    z, x = _crops(1, 1)
    with torch.no_grad():
        _, _, search = model.track(x, model.template(z))
        for row, col in ((0, 0), (14, 14), (0, 14), (7, 3)):
            r, c = torch.tensor([row]), torch.tensor([col])
            at = model.refine_at(search.p0, search.p1, search.p2, search.mask, r, c)
            torch.testing.assert_close(at, model.refine(search, r, c), rtol=0, atol=1e-6)


def test_box_outputs_are_nanotrack_v3_exactly():
    model = _seeded(build_model("siammask_nano"))
    plain = _box_branch_of(model)
    z, x = _crops(3)
    with torch.no_grad():
        cls, loc, search = model.track(x, model.template(z))
        pcls, ploc, psearch = plain.track(x, plain.template(z))
    assert torch.equal(cls, pcls) and torch.equal(loc, ploc) and torch.equal(search.corr, psearch.corr)


def test_published_weights_load_unchanged_and_give_nanotrack_v3s_maps():
    run = RunConfig(model={"arch": "siammask_nano", "init": str(need(PTH))}, data=[], train=TrainConfig(),
                    augment=None, val=None, preset={})
    from siamtrack.train.loop import init_model

    model = init_model(run).eval()
    plain = load_checkpoint(PTH).model
    own = model.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in plain.state_dict().items())
    z, x = _crops(4)
    with torch.no_grad():
        cls, loc, _ = model.track(x, model.template(z))
        pcls, ploc, _ = plain.track(x, plain.template(z))
    assert torch.equal(cls, pcls) and torch.equal(loc, ploc)


def test_checkpoints_load_by_architecture(tmp_path):
    model = _seeded(build_model("siammask_nano"), 5)
    run = RunConfig(model={"arch": "siammask_nano", "mask_channels": 128}, data=[], train=TrainConfig(),
                    augment=None, val=None, preset=dict(PRESETS["nanotrack-v3"].to_dict(), name="siammask-nano"))
    path = tmp_path / "nano.pt"
    torch.save(checkpoint_payload(model, run, 7), path)
    loaded = load_checkpoint(path)
    assert loaded.arch == "siammask_nano" and isinstance(loaded.model, siammask_nano.SiamMaskNano)
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in model.state_dict().items())
    assert loaded.preset["name"] == "siammask-nano"


def test_point_targets_are_positive_at_the_centre_and_train_only_the_mask_branch():
    box = np.array([100.0, 90.0, 160.0, 170.0])  # x1, y1, x2, y2 in the search crop
    t = point_targets(box, False, np.random.default_rng(0))
    pts = point_grid(15, 16) + 127
    pos = np.flatnonzero(t.labels == 1)
    assert pos.size and t.mask_cells[pos].all() and t.mask_cells.sum() == pos.size
    centre = np.array([130.0, 130.0])
    assert np.all(np.hypot(*(pts[pos] - centre).T) < 20)
    assert np.all((pts[t.labels == 0] < box[:2]).any(1) | (pts[t.labels == 0] > box[2:]).any(1)
                  | (np.hypot(*(pts[t.labels == 0] - centre).T) > 20))
    tiny = point_targets(np.array([131.0, 131.0, 135.0, 135.0]), False, np.random.default_rng(0))
    assert (tiny.labels == 1).sum() == 1  # the nearest point: a mask target even for a tiny object
    assert not point_targets(box, True, np.random.default_rng(0)).mask_cells.any()

    model = _seeded(build_model("siammask_nano"), 2)
    assert targets_for(model)(box, False, np.random.default_rng(0)).labels.shape == (225,)
    cfg = TrainConfig(max_mask_cells=8)
    apply_phase(model, "trunk", cfg)
    trained = {id(p) for m in model.trained_modules() for p in m.parameters()}
    assert all(p.requires_grad == (id(p) in trained) for p in model.parameters())
    assert not model.trunk.training and not model.ban_head.training and model.refine_head.training
    z, x = _crops(6)
    mask = torch.zeros(2, 255, 255)
    mask[:, 90:170, 100:160] = 1
    batch = _batch(z, x, t, mask)
    losses = compute_losses(model, batch, cfg, np.random.default_rng(0))
    losses["loss"].backward()
    assert float(losses["mask"].detach()) > 0
    assert all(p.grad is None for p in model.parameters() if id(p) not in trained)
    assert all(p.grad is not None for p in model.refine_head.parameters())


def _clip(n: int = 12):
    return list(synthetic.frames(n, size=(320, 240), seed=3))


@pytest.mark.slow
def test_tracker_end_to_end_gives_masks_and_nanotrack_v3s_boxes():
    """The eager path (fp32-reference) gives plain NanoTrack's boxes exactly; the fast path (BatchNorm
    folded, the tapped trunk traced and frozen) gives masks on every frame where the object is found."""
    model = _seeded(build_model("siammask_nano"), 4)
    if PTH.is_file():
        model.load_state_dict(load_checkpoint(PTH).model.state_dict(), strict=False)
    plain = _box_branch_of(model)
    clip = _clip()
    nano = build_tracker(model, "nanotrack-v3", device="cpu", precision="fp32-reference")
    box_only = build_tracker(plain, "nanotrack-v3", device="cpu", precision="fp32-reference")
    fast = build_tracker(model, "nanotrack-v3", device="cpu", precision="fp32")
    for tracker in (nano, box_only, fast):
        tracker.init(clip[0].image, clip[0].box)
    assert nano.mask_source == fast.mask_source == "network" and box_only.mask_source == "box"
    for frame in clip[1:]:
        (got,) = nano.track(frame.image)
        (want,) = box_only.track(frame.image)
        (quick,) = fast.track(frame.image)
        assert (got.state, got.score, got.box) == (want.state, want.score, want.box)
        assert nano.last_steps[-1].mask127.shape == fast.last_steps[-1].mask127.shape == (127, 127)
        for res in (got, quick):
            assert res.mask.shape == res.mask_prob.shape == frame.mask.shape
            assert res.mask_prob.min() >= 0.0 and res.mask_prob.max() <= 1.0
            assert res.polygon_source in ("mask", "box")


def test_iou_box_loss_is_one_minus_the_overlap_at_the_positives():
    deltas = torch.zeros(1, 4, 4)
    deltas[0, :, 1] = torch.tensor([10.0, 10.0, 10.0, 10.0])  # a 20x20 box around point 1
    weight = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    same = deltas.reshape(1, 4, 2, 2).clone()
    assert iou_box_loss(same, deltas, weight) == pytest.approx(0.0, abs=1e-6)
    half = same.clone()
    half[0, 2, 0, 1] = 0.0  # right distance 0: a 10x20 box inside the 20x20 one, IoU 0.5
    assert iou_box_loss(half, deltas, weight) == pytest.approx(0.5, abs=1e-6)
    assert iou_box_loss(half * 0 - 5, deltas, weight) == pytest.approx(1.0, abs=1e-6)  # negative: clamped, no box


def test_distillation_is_zero_at_the_start_and_grows_as_the_head_moves():
    cls = torch.randn(2, 2, 15, 15)
    loc = torch.rand(2, 4, 15, 15) * 50
    assert distill_loss(cls, loc, cls, loc, 16) == pytest.approx(0.0, abs=1e-6)
    moved = distill_loss(cls, loc + 16, cls, loc, 16)  # every distance one stride longer
    fg = torch.softmax(cls.reshape(2, 2, -1), 1)[:, 1]
    assert moved == pytest.approx(4.0, abs=1e-4) and float(fg.min()) > 0
    assert distill_loss(-cls, loc, cls, loc, 16) > 0.01


def test_tuning_the_box_head_trains_it_near_a_frozen_copy_with_its_statistics_kept():
    model = _seeded(siammask_nano.SiamMaskNano(tune_box=True), 8)
    teacher = _seeded(siammask_nano.SiamMaskNano(), 8).requires_grad_(False)
    apply_phase(model, "trunk", TrainConfig())
    assert model.ban_head in model.trained_modules() and model.ban_head.training
    assert not any(m.training for m in model.ban_head.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert model.mask_head[1].training and not model.trunk.training
    mask_branch, head = clip_groups(model, TrainConfig(clip_per_module=True))  # clipped apart
    assert {id(p) for p in head} == {id(p) for p in model.ban_head.parameters()}
    assert {id(p) for p in mask_branch} == {id(p) for m in (model.mask_corr, model.mask_head, model.refine_head)
                                            for p in m.parameters()}
    assert len(clip_groups(model, TrainConfig())) == 1
    z, x = _crops(9)
    box = np.array([100.0, 90.0, 160.0, 170.0])
    t = point_targets(box, False, np.random.default_rng(0))
    mask = torch.zeros(2, 255, 255)
    mask[:, 90:170, 100:160] = 1
    batch = _batch(z, x, t, mask)
    cfg = TrainConfig(loss_distill=1.0, max_mask_cells=8)
    losses = compute_losses(model, batch, cfg, np.random.default_rng(0), teacher)
    assert float(losses["distill"].detach()) == pytest.approx(0.0, abs=1e-6)  # same weights, same statistics
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.ban_head.parameters() if p.requires_grad)
    assert all(p.grad is None for p in model.trunk.parameters())
    with torch.no_grad():
        for p in model.ban_head.parameters():
            p.add_(0.05)
    assert float(compute_losses(model, batch, cfg, np.random.default_rng(0), teacher)["distill"].detach()) > 0.01


def test_a_mask_trunk_starts_as_the_published_stages_and_trains_alone():
    """``mask_trunk``: refine's stride-2/4/8 maps from a copy of the trunk's first four stages. Loaded
    weights without it start it as the trunk's (the model is then the one it was loaded from); once
    it moves, the masks' maps move and the box branch's outputs do not; it trains, with the trunk's
    BatchNorm statistics, and clips apart from the rest of the mask branch."""
    model = _seeded(build_model("siammask_nano", mask_trunk=True)).eval()
    model.after_init({"trunk.features.0.0.weight"})
    z, x = _crops(2, 1)
    with torch.no_grad():
        p0, p1, p2, xf = model.backbone(x)
        for mine, theirs in zip((p0, p1, p2, xf), model.trunk(x), strict=True):
            assert torch.equal(mine, theirs)
        cls, loc, _ = model.track(x, model.template(z))
        model.mask_trunk[0][0].weight.mul_(1.5)
        moved = model.backbone(x)
        cls2, loc2, _ = model.track(x, model.template(z))
    assert not torch.equal(moved[0], p0) and torch.equal(moved[3], xf)
    assert torch.equal(cls, cls2) and torch.equal(loc, loc2)
    kept = model.mask_trunk[0][0].weight.clone()
    model.after_init({"mask_trunk.0.0.weight"})  # loaded with its own copy: left as loaded
    assert torch.equal(model.mask_trunk[0][0].weight, kept)
    cfg = TrainConfig(clip_per_module=True)
    apply_phase(model, "all", cfg)
    assert model.mask_trunk in model.trained_modules() and model.mask_trunk in model.kept_statistics()
    assert all(p.requires_grad for p in model.mask_trunk.parameters())
    assert not any(p.requires_grad for p in model.trunk.parameters())
    assert not any(m.training for m in model.mask_trunk.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert len(clip_groups(model, cfg)) == 2


def test_a_mask_trunk_stays_float_in_int8_as_the_trunk_does(tmp_path):
    pytest.importorskip("onnx")
    from siamtrack.backends.onnx_export import export_graphs
    from siamtrack.backends.onnx_quant import float_nodes

    model = _seeded(build_model("siammask_nano", mask_trunk=True)).eval()
    export_graphs(model, tmp_path)
    kept = float_nodes(tmp_path / "search.onnx", float_trunk=True)
    import onnx

    convs = [n.name for n in onnx.load(str(tmp_path / "search.onnx")).graph.node if n.op_type == "Conv"]
    mine = [n for n in convs if n.startswith("/mask_trunk.")]
    assert mine and set(mine) <= set(kept)
    assert any("/trunk/" in n for n in kept) and any("/refine" not in n and "/mask_head/" in n for n in convs)
