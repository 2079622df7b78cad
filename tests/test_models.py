"""Both architectures share one correlation head and one refine module, with unchanged state-dict names."""

from __future__ import annotations

import torch

from siamtrack.models import build_model
from siamtrack.models.siammask import DepthCorr, Refine
from siamtrack.weights.loading import read_checkpoint
from tests.conftest import REPO


def test_lite_uses_the_shared_head_and_refine_at_its_widths():
    lite = build_model("siammask_lite", channels=32)
    assert all(type(m) is DepthCorr for m in (lite.cls, lite.loc, lite.mask))
    assert type(lite.refine_head) is Refine
    assert lite.mask.head is None and lite.cls.head[-1].out_channels == 10 and lite.loc.head[-1].out_channels == 20
    assert lite.refine_head.deconv.in_channels == 32
    assert [lite.refine_head.v0[0].in_channels, lite.refine_head.v1[0].in_channels,
            lite.refine_head.v2[0].in_channels] == [16, 24, 40]
    assert [lite.refine_head.v0[0].out_channels, lite.refine_head.v1[0].out_channels,
            lite.refine_head.v2[0].out_channels] == [16, 32, 64]


def test_state_dict_names_and_sizes_are_the_checkpoints():
    official = build_model("siammask_sharp").state_dict()
    assert len(official) == 356 and sum(v.numel() for v in official.values()) == 21_517_817
    assert tuple(official["refine_model.deconv.weight"].shape) == (256, 32, 15, 15)
    assert tuple(official["mask_model.mask.head.3.weight"].shape) == (63 * 63, 256, 1, 1)
    lite = build_model("siammask_lite").state_dict()
    assert len(lite) == 288 and sum(v.numel() for v in lite.values()) == 2_663_629
    shipped = REPO / "weights" / "siammask-lite.pt"
    if shipped.is_file():
        stored = read_checkpoint(shipped)["state_dict"]
        assert {k: tuple(v.shape) for k, v in stored.items()} == {k: tuple(v.shape) for k, v in lite.items()}


def test_the_headless_correlation_is_the_correlation_feature():
    torch.manual_seed(0)
    corr = DepthCorr(8, out_channels=None).eval()
    kernel, search = torch.rand(2, 8, 7, 7), torch.rand(2, 8, 31, 31)
    with torch.inference_mode():
        out = corr(corr.conv_kernel(kernel), search)
        assert out.shape == (2, 8, 25, 25)
        torch.testing.assert_close(out, corr.correlate(corr.conv_kernel(kernel), search))
