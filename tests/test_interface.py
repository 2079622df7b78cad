"""The documented interfaces are the real ones: ``SiamNetwork`` for networks, ``ObjectTracker`` for trackers."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from siamtrack.api import build_tracker
from siamtrack.errors import SiamtrackError
from siamtrack.eval import baselines
from siamtrack.eval.harness import tracker_meta
from siamtrack.io import synthetic
from siamtrack.models import NETWORK_METHODS, SiamNetwork, build_model
from siamtrack.results import ObjectTracker
from tests.conftest import REPO


def _lite() -> nn.Module:
    torch.manual_seed(0)
    return build_model("siammask_lite", channels=16).eval()


class Delegating(nn.Module):
    """A network of no siamtrack class that implements exactly the documented interface."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def template_features(self, z):
        return self.inner.template_features(z)

    def kernels(self, zf):
        return self.inner.kernels(zf)

    def template(self, z):
        return self.kernels(self.template_features(z))

    def backbone(self, x):
        return self.inner.backbone(x)

    def heads(self, feats, kernels):
        return self.inner.heads(feats, kernels)

    def track(self, x, kernels):
        return self.heads(self.backbone(x), kernels)

    def refine(self, feats, rows, cols, batch_idx=None):
        return self.inner.refine(feats, rows, cols, batch_idx)


class OldInterface(nn.Module):
    """What the docs used to promise was enough: template, track and refine."""

    def template(self, z):
        raise AssertionError("never called")

    track = refine = template


def test_the_protocol_is_what_the_architecture_doc_lists():
    doc = (REPO / "docs" / "architecture.md").read_text()
    listed = re.findall(r"^net\.(\w+)\(", doc, flags=re.MULTILINE)
    assert tuple(listed) == NETWORK_METHODS == (
        "template_features", "kernels", "template", "backbone", "heads", "track", "refine")
    for arch in ("siammask_sharp", "siammask_lite"):
        assert isinstance(build_model(arch), SiamNetwork)
    assert not isinstance(OldInterface(), SiamNetwork)


def test_a_module_without_the_interface_is_refused_in_one_line():
    with pytest.raises(SiamtrackError) as exc:
        build_tracker(OldInterface(), device="cpu", precision="fp32")
    assert str(exc.value) == ("OldInterface is not a SiamMask network: it lacks template_features, kernels, "
                              "backbone, heads (the interface is siamtrack.models.SiamNetwork)")


@pytest.mark.parametrize("precision", ["fp32", "fp32-reference"])
def test_any_module_with_the_interface_tracks_like_the_model(precision):
    model = _lite()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(3)]
    trackers = [build_tracker(m, "davis", device="cpu", precision=precision) for m in (model, Delegating(model))]
    assert trackers[1].arch == "Delegating"
    for t in trackers:
        t.init(frames[0], (40, 30, 50, 40))
    for f in frames[1:]:
        (a,), (b,) = (t.track(f) for t in trackers)
        np.testing.assert_allclose(a.box, b.box, atol=1e-4)
        assert np.count_nonzero(a.mask != b.mask) <= 2


def test_trackers_baselines_and_oracles_share_one_protocol():
    siam = build_tracker(_lite(), "vot", device="cpu", precision="fp32", model_name="tiny")
    oracle = synthetic.OracleTracker(4, (64, 48))
    assert isinstance(siam, ObjectTracker) and isinstance(oracle, ObjectTracker)
    meta = tracker_meta(siam)["preset"]
    official = ("name", "penalty_k", "window_influence", "lr", "seg_thr", "context_amount", "style")
    assert {k: meta[k] for k in official} == {"name": "vot", "penalty_k": 0.04, "window_influence": 0.42, "lr": 0.25,
                                              "seg_thr": 0.30, "context_amount": 0.5, "style": "official"}
    assert meta == siam.preset.to_dict() and meta["lost_state"] is True
    assert tracker_meta(siam)["model"] == "tiny" and tracker_meta(siam)["tracker"] == "siammask"
    if "opencv-mil" in baselines.available():
        mil = baselines.OpenCVTracker("opencv-mil")
        assert isinstance(mil, ObjectTracker)
        meta = tracker_meta(mil)
        assert (meta["tracker"], meta["arch"], meta["preset"], meta["device"]) == ("opencv-mil", "opencv", None, "cpu")
