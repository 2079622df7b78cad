"""Seeded weights in the official SiamMask checkpoint layout, made inside the suite.

The key names, order and shapes are written out here from the official ``siammask_sharp``
network's structure (ResNet-50 to layer3, adjust layer, depth-wise RPN and mask heads,
refine module), not read from ``siamtrack.models``, so loading these files really tests
that the loader and the model agree with the official layout. Where ``../shared/golden`` is
present, ``test_weights_loading`` checks this list against the one recorded from the
official code.

The values are random but scaled so that activations stay O(1) on raw 0..255 BGR input:
the seeded network gives finite, deterministic, non-degenerate outputs (spread scores,
partial masks). It does not track anything real; tests that need a tracker that works use
the shipped siammask-lite.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

SEED = 5  # among seeds 0..7: spread scores, partial masks, and size updates that need the clamps
# (blocks, planes, kernel of the first block's shortcut convolution) of layer1..layer3.
RESNET_LAYERS = ((3, 64, 1), (4, 128, 3), (6, 256, 3))
# Outputs of the three depth-wise correlation heads: 2 x 5 anchor scores, 4 x 5 offsets, a 63x63 mask.
HEADS = (("rpn_model.cls", 10), ("rpn_model.loc", 20), ("mask_model.mask", 63 * 63))
# Refine module: (name, [(out, in) of its 3x3 convolutions]), in the official order.
REFINE = (("v0", [(16, 64), (4, 16)]), ("v1", [(64, 256), (16, 64)]), ("v2", [(128, 512), (32, 128)]),
          ("h2", [(32, 32), (32, 32)]), ("h1", [(16, 16), (16, 16)]), ("h0", [(4, 4), (4, 4)]))
PYSOT_PREFIXES = (("features.features.", "backbone."), ("features.downsample.", "neck.downsample."),
                  ("rpn_model.", "rpn_head."), ("mask_model.mask.", "mask_head."), ("refine_model.", "refine_head."))

# Multiplier on the He standard deviation, first matching pattern wins.
GAINS = (
    (r"^features\.features\.conv1\.", 1 / 128),  # the trunk sees raw 0..255 pixels
    (r"\.conv3\.weight$", 0.35),  # damps each residual branch: 13 of them are added up
    (r"\.conv_(kernel|search)\.0\.", 0.1),  # keeps the correlation products O(1)
    (r"^rpn_model\.loc\.head\.3\.", 0.003),  # small offsets: boxes near their anchors
    (r"^mask_model\.mask\.head\.3\.", 0.7),
    (r"^refine_model\.v0\.0\.", 0.3),
    (r"^refine_model\.v2\.0\.", 3.0),
    (r"^refine_model\.post2\.", 2.0),  # logits spread around 0: partial masks
)


def _conv(key: str, out: int, inp: int, k: int, bias: bool = False) -> list[tuple[str, tuple[int, ...], str]]:
    entries = [(f"{key}.weight", (out, inp, k, k), "conv")]
    return entries + [(f"{key}.bias", (out,), "bias")] if bias else entries


def _bn(key: str, n: int) -> list[tuple[str, tuple[int, ...], str]]:
    return [(f"{key}.{p}", (n,) if p != "num_batches_tracked" else (), p)
            for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


def official_layout() -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, role) of every entry of the official state dict, in its order."""
    trunk = "features.features"
    entries = _conv(f"{trunk}.conv1", 64, 3, 7) + _bn(f"{trunk}.bn1", 64)
    inplanes = 64
    for layer, (blocks, planes, short_k) in enumerate(RESNET_LAYERS, start=1):
        for b in range(blocks):
            key = f"{trunk}.layer{layer}.{b}"
            entries += _conv(f"{key}.conv1", planes, inplanes, 1) + _bn(f"{key}.bn1", planes)
            entries += _conv(f"{key}.conv2", planes, planes, 3) + _bn(f"{key}.bn2", planes)
            entries += _conv(f"{key}.conv3", 4 * planes, planes, 1) + _bn(f"{key}.bn3", 4 * planes)
            if b == 0:
                entries += _conv(f"{key}.downsample.0", 4 * planes, inplanes, short_k)
                entries += _bn(f"{key}.downsample.1", 4 * planes)
            inplanes = 4 * planes
    entries += _conv("features.downsample.downsample.0", 256, 1024, 1) + _bn("features.downsample.downsample.1", 256)
    for key, out in HEADS:
        for branch in ("conv_kernel", "conv_search"):
            entries += _conv(f"{key}.{branch}.0", 256, 256, 3) + _bn(f"{key}.{branch}.1", 256)
        entries += _conv(f"{key}.head.0", 256, 256, 1) + _bn(f"{key}.head.1", 256)
        entries += _conv(f"{key}.head.3", out, 256, 1, bias=True)
    for name, convs in REFINE:
        for i, (out, inp) in enumerate(convs):
            entries += _conv(f"refine_model.{name}.{2 * i}", out, inp, 3, bias=True)
    entries += [("refine_model.deconv.weight", (256, 32, 15, 15), "deconv"),
                ("refine_model.deconv.bias", (32,), "bias")]
    for i, (out, inp) in enumerate(((16, 32), (4, 16), (1, 4))):
        entries += _conv(f"refine_model.post{i}", out, inp, 3, bias=True)
    return entries


def _gain(key: str) -> float:
    return next((g for pattern, g in GAINS if re.search(pattern, key)), 1.0)


def seeded_state_dict(seed: int = SEED) -> OrderedDict[str, torch.Tensor]:
    """Official-layout tensors: He-scaled normal convolutions, small biases, identity BatchNorm."""
    rng = np.random.default_rng(seed)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, shape, role in official_layout():
        if role in ("conv", "deconv"):
            fan_in = shape[0] if role == "deconv" else int(np.prod(shape[1:]))  # deconv: stride = kernel
            value = rng.standard_normal(shape, dtype=np.float32) * np.float32(_gain(key) * np.sqrt(2 / fan_in))
        elif role == "bias":
            value = rng.standard_normal(shape, dtype=np.float32) * np.float32(0 if "loc.head" in key else 0.01)
        elif role == "num_batches_tracked":
            value = np.zeros(shape, np.int64)
        else:
            value = np.full(shape, 1.0 if role in ("weight", "running_var") else 0.0, np.float32)
        state[key] = torch.from_numpy(value)
    return state


def pysot_name(key: str) -> str:
    """The name PySOT's ``siammask_r50_l3`` gives an official key (a one-to-one renaming)."""
    for official, pysot in PYSOT_PREFIXES:
        if key.startswith(official):
            return pysot + key.removeprefix(official)
    raise KeyError(key)


def write_checkpoint(state: dict[str, torch.Tensor], path: Path, layout: str = "state_dict",
                     legacy: bool = True) -> Path:
    """Save ``state`` as the official files come: ``state_dict`` / ``flat`` / ``module`` /
    ``state_dict_module`` / ``pysot`` (flat, PySOT names); legacy (pre-1.6) or zip serialisation."""
    if layout == "pysot":
        inner = OrderedDict((pysot_name(k), v) for k, v in state.items())
    else:
        prefix = "module." if layout in ("module", "state_dict_module") else ""
        inner = OrderedDict((prefix + k, v) for k, v in state.items())
    obj = {"state_dict": inner} if layout.startswith("state_dict") else inner
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path
