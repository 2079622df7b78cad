"""siammask-nano: SiamMask's mask branch on NanoTrack v3.

The box branch is NanoTrack v3 unchanged (``siamtrack.models.nanotrack``: trunk and BAN head under
the names its checkpoint loads into), so its score and box maps are NanoTrack's to the bit. What it
adds is SiamMask's: a per-point mask feature from a correlation of its own, and the refine module,
which decodes that feature at a point (the decoder's ``mask_cell``) into a 127x127 mask with the
trunk's stride-2/4/8 maps (the paper's refine, Wang et al. 2019, Fig. 3).

Geometry. NanoTrack's trunk is "same"-padded: stride-``s`` cell ``m`` of a 255 search crop sits
at crop pixel ``s * m``. Point ``i`` of the 15x15 map stands for crop pixel ``16 i + 15`` (the crop
centre 127 plus 16 per cell from the middle one, ``siamtrack.decoders.point_grid``), and its mask
covers the 127 pixels around it, ``[16 i - 48, 16 i + 79)`` (``PointDecoder.mask_window``). The
refine windows are the trunk cells of that square: 15 stride-8 cells from ``2 i - 5``, 31 stride-4
cells from ``4 i - 11``, 61 stride-2 cells from ``8 i - 22`` (each centred within a pixel of the
point).

Mask feature of a point: a depth-wise correlation with the template's central 4x4 cells (the
structure of NanoTrack's own, with its own adapters), concatenated with the classification
branch's fused correlation (frozen, what NanoTrack learned about the target) and mixed by a
1x1 convolution. Only the mask feature and refine train (``trained_modules``), unless
``tune_box``: then NanoTrack's head trains too (with a distillation loss that keeps it near the
published one, ``[train] loss_distill``); the trunk stays frozen either way.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import Tensor, nn

from siamtrack.models.nanotrack import _BLOCKS, _V3_EXTRA, V3, DepthwiseCorr, MobileNetV3Small, NanoKernels, NanoTrack
from siamtrack.models.siammask import Refine

ARCH_NAME = "siammask_nano"
SKIP_CHANNELS = (16, 16, 24)  # trunk widths at stride 2, 4 and 8
# (first cell at point 0, cells per point step, window side) at stride 2, 4 and 8 (module docstring)
WINDOWS = ((-22, 8, 61), (-11, 4, 31), (-5, 2, 15))


class NanoMaskKernels(NamedTuple):
    """NanoTrack's template tensors plus the mask correlation's adapted template."""

    pw_cls: Tensor
    pw_reg: Tensor
    dw_cls: Tensor
    dw_reg: Tensor
    mask: Tensor


class NanoMaskSearch(NamedTuple):
    """Per-frame tensors kept for refine: the stride-2/4/8 maps, the classification correlation
    (``corr``: the tracker's appearance evidence, as for NanoTrack) and the mask feature."""

    p0: Tensor
    p1: Tensor
    p2: Tensor
    corr: Tensor
    mask: Tensor


def window_pad(first: int, step: int, size: int, side: int, points: int) -> tuple[int, int]:
    """Zero cells needed before and after a map of ``side`` cells so that the windows of ``points``
    points along it (``first + step * i``, ``size`` cells each) lie inside: padding the whole map by a
    window's side instead is a third of siammask-nano's refine time in ONNX Runtime."""
    return max(0, -first), max(0, first + step * (points - 1) + size - side)


def point_windows(feature: Tensor, first: int, step: int, size: int, batch_idx: Tensor, rows: Tensor,
                  cols: Tensor, points: int) -> Tensor:
    """Windows ``feature[b, :, first + step*r : ... + size, first + step*c : ... + size]`` per (b, r, c),
    zero outside the map (``points`` points per side of the score map)."""
    lo_y, hi_y = window_pad(first, step, size, feature.shape[2], points)
    lo_x, hi_x = window_pad(first, step, size, feature.shape[3], points)
    padded = nn.functional.pad(feature, [lo_x, hi_x, lo_y, hi_y])
    crops = []
    for b, r, c in zip(batch_idx.tolist(), rows.tolist(), cols.tolist(), strict=True):
        y, x = lo_y + first + step * r, lo_x + first + step * c
        crops.append(padded[b, :, y:y + size, x:x + size])
    return torch.stack(crops)


class TappedTrunk(MobileNetV3Small):
    """NanoTrack v3's trunk (same modules, same checkpoint names) returning its stride-2, 4 and 8
    maps beside the stride-16 output: one module, so the engine can trace and freeze it whole."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        f = self.features
        p0 = f[0](x)
        p1 = f[1](p0)
        p2 = f[3](f[2](p1))
        return p0, p1, p2, f[4:](p2)


class SiamMaskNano(NanoTrack):
    """NanoTrack v3 (frozen box branch) with a mask feature per point and SiamMask's refine."""

    masks = True  # the point decoder refines a mask (at its ``mask_cell``)
    export_layout = "features-refine"  # siamtrack.backends.onnx_export.LAYOUTS

    def __init__(self, mask_channels: int = 128, tune_box: bool = False, mask_trunk: bool = False) -> None:
        super().__init__(V3)
        self.tune_box = tune_box
        self.arch = ARCH_NAME
        self.trunk = TappedTrunk(_BLOCKS + _V3_EXTRA)
        width = self.trunk.out_channels
        self.mask_corr = DepthwiseCorr(width)
        self.mask_head = nn.Sequential(nn.Conv2d(2 * width, mask_channels, 1, bias=False),
                                       nn.BatchNorm2d(mask_channels), nn.ReLU(inplace=True))
        self.refine_head = Refine(skip=SKIP_CHANNELS, hidden=(16, 32, 64), corr_channels=mask_channels)
        # mask_trunk: refine reads its stride-2/4/8 maps from a trained copy of the trunk's first stages
        # (started as NanoTrack's, ``after_init``), the box branch from the frozen published trunk
        self.mask_trunk = nn.Sequential(*copy.deepcopy(self.trunk.features[:4])) if mask_trunk else None

    def template_features(self, z: Tensor) -> Tensor:
        return self.trunk(z)[-1]

    def kernels(self, zf: Tensor) -> NanoMaskKernels:
        return NanoMaskKernels(*self.ban_head.kernels(zf), self.mask_corr.kernel(zf))

    def template(self, z: Tensor) -> NanoMaskKernels:
        return self.kernels(self.template_features(z))

    def backbone(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Search crops -> the stride-2, 4, 8 maps (the mask trunk's where there is one) and the
        trunk's stride-16 output."""
        p0, p1, p2, xf = self.trunk(x)
        if self.mask_trunk is not None:
            f = self.mask_trunk
            p0 = f[0](x)
            p1 = f[1](p0)
            p2 = f[3](f[2](p1))
        return p0, p1, p2, xf

    def after_init(self, loaded: set[str]) -> None:
        """Starting weights are loaded (tensor names ``loaded``): a mask trunk they do not hold starts
        as a copy of the published trunk's stages, so the model starts as the one it was loaded from."""
        if self.mask_trunk is not None and not any(k.startswith("mask_trunk.") for k in loaded):
            self.mask_trunk.load_state_dict(nn.Sequential(*self.trunk.features[:4]).state_dict())

    def heads(self, feats: tuple[Tensor, Tensor, Tensor, Tensor],
              kernels: NanoMaskKernels) -> tuple[Tensor, Tensor, NanoMaskSearch]:
        """NanoTrack's score and box maps, and the mask feature of every point."""
        p0, p1, p2, xf = feats
        cls, loc, nano = self.ban_head(xf, NanoKernels(*kernels[:4]))
        mask = self.mask_head(torch.cat((self.mask_corr(kernels.mask, xf), nano.corr), 1))
        return cls, loc, NanoMaskSearch(p0, p1, p2, nano.corr, mask)

    def track(self, x: Tensor, kernels: NanoMaskKernels) -> tuple[Tensor, Tensor, NanoMaskSearch]:
        return self.heads(self.backbone(x), kernels)

    def refine(self, feats: NanoMaskSearch, rows: Tensor, cols: Tensor,
               batch_idx: Tensor | None = None) -> Tensor:
        """Mask logits (N,127,127) at points (batch_idx, row, col)."""
        if batch_idx is None:
            batch_idx = torch.arange(rows.shape[0], device=rows.device)
        skips = [point_windows(m, *w, batch_idx, rows, cols, self.score_size)
                 for m, w in zip(feats[:3], WINDOWS, strict=True)]
        vec = feats.mask[batch_idx, :, rows, cols].reshape(-1, feats.mask.shape[1], 1, 1)
        return self.refine_head(*skips, vec)

    def refine_at(self, p0: Tensor, p1: Tensor, p2: Tensor, mask: Tensor, row: Tensor, col: Tensor) -> Tensor:
        """``refine`` of one search at one point, the point as (1,) tensors: the windows cut by gathers,
        so that it traces into a graph whose point is an input (the ONNX export)."""
        def window(feature: Tensor, first: int, step: int, size: int) -> Tensor:
            # gathers of clamped cells times a 0/1 mask of the cells inside the map: padding the map
            # in the graph instead cost ONNX Runtime more than the rest of the windowing
            ys, xs = (step * p + first + torch.arange(size, device=feature.device) for p in (row, col))
            h, w = int(feature.shape[2]), int(feature.shape[3])
            inside = (((ys >= 0) & (ys < h)).to(feature.dtype)[:, None]
                      * ((xs >= 0) & (xs < w)).to(feature.dtype)[None, :])
            return feature.index_select(2, ys.clamp(0, h - 1)).index_select(3, xs.clamp(0, w - 1)) * inside

        skips = [window(m, *w) for m, w in zip((p0, p1, p2), WINDOWS, strict=True)]
        return self.refine_head(*skips, mask.index_select(2, row).index_select(3, col))

    def trained_modules(self) -> list[nn.Module]:
        """What training updates: the mask branch (one module), its trunk copy if it has one, and
        NanoTrack's head when ``tune_box``."""
        mask_branch = nn.ModuleList([self.mask_corr, self.mask_head, self.refine_head])
        return ([mask_branch] + ([self.mask_trunk] if self.mask_trunk is not None else [])
                + ([self.ban_head] if self.tune_box else []))

    def kept_statistics(self) -> list[nn.Module]:
        """Trained modules whose BatchNorm statistics stay as published: a tuned box head starts
        exactly where NanoTrack's is, so distillation starts at zero; a mask trunk keeps the
        trunk's (batches of 16 crops are too few to estimate them again)."""
        return ([self.ban_head] if self.tune_box else []) + ([self.mask_trunk] if self.mask_trunk is not None else [])

    def trunk_stages(self) -> list[nn.Module]:
        return list(self.trunk.features)


def build(**cfg) -> SiamMaskNano:
    return SiamMaskNano(**cfg)
