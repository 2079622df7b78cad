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
    shipped = REPO / "siamtrack" / "weights" / "siammask-lite.pt"
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


def test_deeper_trunks_keep_the_taps_and_widen_only_where_their_checkpoints_do():
    """Lite1 adds blocks to stages 2-5; Lite2 also widens stages 3-5 (48/88/120): taps and refine follow."""
    lite1, lite2 = build_model("siammask_lite", trunk="lite1"), build_model("siammask_lite", trunk="lite2")
    assert lite1.trunk.taps == (0, 3, 6, 14) and lite1.trunk_spec.first_dilated == 7
    assert len(lite1.trunk._blocks) == 15 and lite2.trunk.taps == (0, 3, 6, 14)
    assert lite1.refine_head.v2[0].in_channels == 40 and lite1.adjust[0].in_channels == 112
    assert lite2.refine_head.v2[0].in_channels == 48 and lite2.adjust[0].in_channels == 120
    assert lite2.trunk._blocks[7]._depthwise_conv.stride == (1, 1)  # the stride-16 stage, dilated
    assert lite2.trunk._blocks[8]._depthwise_conv.dilation == (2, 2)


def test_unknown_trunk_is_one_line():
    import pytest

    from siamtrack.errors import SiamtrackError

    with pytest.raises(SiamtrackError, match="unknown siammask_lite trunk 'lite9'"):
        build_model("siammask_lite", trunk="lite9")
