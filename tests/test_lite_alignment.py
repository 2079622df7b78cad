"""siammask-lite shares the official geometry: same map sizes, cells at the same crop pixels,
refine windows over the same crop region, normalisation inside the model."""

from __future__ import annotations

import pytest
import torch

from siamtrack.models import build_model


def centroid_of_influence(model, tap: int, cell: int, size: int = 255) -> float:
    """Row of the input pixel mass that influences feature ``tap`` at (cell, cell)."""
    x = (torch.rand(1, 3, size, size) * 255).requires_grad_(True)
    feats = model.backbone(x) if size == 255 else None
    feats[tap][0, :, cell, cell].sum().backward()
    g = x.grad.abs().sum(1)[0].sum(1)
    return float((g * torch.arange(size)).sum() / g.sum())


@pytest.mark.parametrize("trunk", ["lite0", "lite1", "lite2"])
@pytest.mark.parametrize("cell", [6, 15, 24])
def test_stride8_cells_align_with_the_official_network(cell, trunk):
    """Official stride-8 cell m sits at crop pixel 8m + 7 (its unpadded 7x7/2 conv, pool and 3x3/2 conv)."""
    torch.manual_seed(0)
    lite = build_model("siammask_lite", trunk=trunk).eval()
    assert abs(centroid_of_influence(lite, 2, cell) - (8 * cell + 7)) < 1.5


@pytest.mark.parametrize("trunk", ["lite0", "lite1", "lite2"])
def test_shapes_match_the_tracker_contract(trunk):
    lite = build_model("siammask_lite", trunk=trunk).eval()
    with torch.inference_mode():
        k = lite.template(torch.rand(2, 3, 127, 127) * 255)
        cls, loc, feats = lite.heads(lite.backbone(torch.rand(2, 3, 255, 255) * 255), k)
        assert cls.shape == (2, 10, 25, 25) and loc.shape == (2, 20, 25, 25)
        masks = lite.refine(feats, torch.tensor([0, 24]), torch.tensor([24, 0]))
    assert masks.shape == (2, 127, 127)


def test_refine_window_covers_the_cell_window():
    """Perturbing the crop inside cell (r, c)'s window [8r-32, 8r+95) changes its mask; far outside it does not."""
    torch.manual_seed(1)
    lite = build_model("siammask_lite").eval()
    x = torch.rand(1, 3, 255, 255) * 255
    k = lite.template(torch.rand(1, 3, 127, 127) * 255)
    r = c = 12
    with torch.inference_mode():
        _, _, f = lite.heads(lite.backbone(x), k)
        base = lite.refine(f, torch.tensor([r]), torch.tensor([c]))
        far = x.clone()
        far[:, :, 0:20, 0:20] = 0  # outside [64, 191) and beyond every receptive field edge used by refine
        _, _, f2 = lite.heads(lite.backbone(far), k)
        # corr at the cell sees the whole search region through the correlation; compare only the skip path
        f2 = type(f2)(f2.p0, f2.p1, f2.p2, f.corr)
        assert torch.allclose(lite.refine(f2, torch.tensor([r]), torch.tensor([c])), base, atol=1e-4)
        near = x.clone()
        near[:, :, 120:136, 120:136] = 0
        _, _, f3 = lite.heads(lite.backbone(near), k)
        f3 = type(f3)(f3.p0, f3.p1, f3.p2, f.corr)
        assert not torch.allclose(lite.refine(f3, torch.tensor([r]), torch.tensor([c])), base, atol=1e-4)


def test_input_is_raw_bgr():
    """The model turns the tracker's raw BGR 0..255 crop into what Lite0 was trained on: RGB in [-1, 1]
    (mean = std = 0.5), without the first 7 rows and columns (the alignment above)."""
    lite = build_model("siammask_lite").eval()
    seen = []
    lite.trunk.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    bgr = torch.empty(1, 3, 255, 255)
    bgr[:, 0], bgr[:, 1], bgr[:, 2] = 255.0, 127.5, 0.0  # pure blue, half green, no red
    bgr[:, :, :7, :] = bgr[:, :, :, :7] = 0.0  # the rows and columns the model drops
    with torch.inference_mode():
        lite.backbone(bgr)
    (x,) = seen
    assert x.shape == (1, 3, 248, 248)
    expected = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 248, 248)  # R, G, B
    assert torch.equal(x, expected)
