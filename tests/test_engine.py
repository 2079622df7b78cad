"""The fast inference rewrites change speed, not results."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from siamtrack.api import build_tracker
from siamtrack.backends.engine import TraceFallbackWarning, _FrozenTrunk, count_track_flops, prepare_network
from siamtrack.models import build_model


def _lite(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model("siammask_lite", channels=32).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model


def test_frozen_trunk_equals_the_eager_trunk_for_any_batch_and_size():
    net, mode = prepare_network(_lite(), torch.device("cpu"), "fp32")
    assert mode == "fp32" and isinstance(net.trunk, _FrozenTrunk) and net.trunk.frozen is not None
    with torch.inference_mode():
        for shape in ((1, 3, 248, 248), (3, 3, 248, 248), (2, 3, 120, 120)):
            x = torch.rand(shape) * 2 - 1
            fast, eager = net.trunk(x), net.trunk.trunk(x)
            for a, b in zip(fast, eager, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_frozen_trunk_keeps_flop_counts_and_tracker_outputs():
    model = _lite(1)
    fast = build_tracker(model, "davis", device="cpu", precision="fp32")
    plain = build_tracker(model, "davis", device="cpu", precision="fp32")
    plain.net.net.trunk.frozen = None  # the eager trunk
    assert count_track_flops(fast.net.net, fast.device) == count_track_flops(plain.net.net, plain.device) > 0
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(4)]
    for t in (fast, plain):
        t.init(frames[0], (100, 80, 60, 50))
    for f in frames[1:]:
        (a,), (b,) = fast.track(f), plain.track(f)
        np.testing.assert_allclose(a.box, b.box, atol=1e-3)
        assert np.count_nonzero(a.mask != b.mask) <= 5


def test_official_trunk_stays_eager():
    net, _ = prepare_network(build_model("siammask_sharp"), torch.device("cpu"), "fp32")
    assert not any(isinstance(m, _FrozenTrunk) for m in net.modules())


def _batchnorms(net: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_fp32_folds_every_batchnorm_of_both_architectures():
    lite = _lite()
    assert _batchnorms(lite) == 42
    net, _ = prepare_network(lite, torch.device("cpu"), "fp32")
    assert _batchnorms(net) == 0 and _batchnorms(net.trunk.trunk) == 0  # the eager trunk too
    official = build_model("siammask_sharp")
    assert _batchnorms(official) == 53
    net, _ = prepare_network(official, torch.device("cpu"), "fp32")
    assert _batchnorms(net) == 0
    assert _batchnorms(lite) == 42  # the caller's module is untouched


def test_folded_network_computes_what_the_model_computes():
    model = _lite(2)
    net, _ = prepare_network(model, torch.device("cpu"), "fp32")
    net.trunk.frozen = None  # the folded eager trunk
    torch.manual_seed(3)
    z, x = torch.rand(2, 3, 127, 127) * 255, torch.rand(2, 3, 255, 255) * 255
    rows, cols = torch.tensor([3, 20]), torch.tensor([12, 5])
    with torch.inference_mode():
        outs = []
        for m in (model, net):
            cls, loc, feats = m.heads(m.backbone(x), m.template(z))
            outs.append((cls, loc, feats.corr, m.refine(feats, rows, cols)))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_a_trunk_that_cannot_be_traced_warns_once_and_runs_eagerly(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("tracing refused\nsecond line")

    monkeypatch.setattr(torch.jit, "trace", refuse)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = build_tracker(_lite(), "davis", device="cpu", precision="fp32")
        frame = np.zeros((120, 160, 3), dtype=np.uint8)
        tracker.init(frame, (40, 30, 50, 40))
        for _ in range(3):
            tracker.track(frame)
    fallbacks = [w for w in caught if issubclass(w.category, TraceFallbackWarning)]
    assert len(fallbacks) == 1 and tracker.net.net.trunk.frozen is None
    assert str(fallbacks[0].message) == "LiteTrunk could not be frozen (tracing refused); it runs eagerly, slower"


def test_a_traced_trunk_does_not_warn():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net, _ = prepare_network(_lite(), torch.device("cpu"), "fp32")
    assert net.trunk.frozen is not None
    assert not [w for w in caught if issubclass(w.category, TraceFallbackWarning)]
