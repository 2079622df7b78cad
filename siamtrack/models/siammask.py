"""The official SiamMask "sharp" network: ResNet-50 (atrous, to layer3), adjust, depth-wise heads, refine.

Module and parameter names reproduce the official state dict (356 entries) so official
checkpoints load without renaming. The forward pass is split the way a tracker uses it:
``template`` once per object (template features and the three correlation kernels),
``track`` per frame (search features, score and box maps, mask correlation feature) and
``refine`` only at the chosen response cell. The 63x63 mask head of the official code
(computed there on every frame, unused when refining) is kept for loading only.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ARCH_NAME = "siammask_sharp"


class Bottleneck(nn.Module):
    """ResNet bottleneck with the official padding rule (no padding for the strided 3x3)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, dilation: int = 1) -> None:
        super().__init__()
        padding = dilation if dilation > 1 else 2 - stride
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=padding, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet50Atrous(nn.Module):
    """ResNet-50 to layer3: stride 8 overall, layer3 dilated; returns the stride-2/4/8 maps too."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.inplanes = 64
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, dilation=2)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        out_ch = planes * Bottleneck.expansion
        first_dilation = dilation
        if stride == 1 and dilation == 1:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        else:
            # Official quirk: a 3x3 projection; the first block of a dilated stage uses half the dilation.
            first_dilation = dilation // 2 if dilation > 1 else 1
            padding = first_dilation if dilation > 1 else 0
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out_ch, 3, stride=stride, padding=padding,
                          dilation=first_dilation, bias=False),
                nn.BatchNorm2d(out_ch),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, dilation=first_dilation)]
        self.inplanes = out_ch
        layers += [Bottleneck(out_ch, planes, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        p0 = self.relu(self.bn1(self.conv1(x)))
        p1 = self.layer1(self.maxpool(p0))
        p2 = self.layer2(p1)
        p3 = self.layer3(p2)
        return p0, p1, p2, p3


class _Adjust(nn.Module):
    def __init__(self, inplanes: int, outplanes: int) -> None:
        super().__init__()
        self.downsample = nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, bias=False), nn.BatchNorm2d(outplanes))


class _Features(nn.Module):
    """Holds the trunk and adjust layer under the official names ``features.features`` / ``features.downsample``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = ResNet50Atrous()
        self.downsample = _Adjust(1024, 256)


def _conv_bn_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def depthwise_xcorr(search: Tensor, kernel: Tensor) -> Tensor:
    """Per-channel cross-correlation of each sample's search map with its own kernel."""
    b, c = kernel.shape[:2]
    out = F.conv2d(search.reshape(1, b * c, *search.shape[2:]), kernel.reshape(b * c, 1, *kernel.shape[2:]),
                   groups=b * c)
    return out.reshape(b, c, *out.shape[2:])


class DepthCorr(nn.Module):
    """Depth-wise correlation head: separate 3x3 adapters for template and search, then a 1x1 head.

    ``out_channels=None`` leaves out the head: the correlation feature itself is the output
    (siammask-lite's mask branch, which feeds only refine).
    """

    def __init__(self, channels: int = 256, hidden: int | None = None, out_channels: int | None = 10) -> None:
        super().__init__()
        hidden = hidden or channels
        self.conv_kernel = _conv_bn_relu(channels, hidden, 3)
        self.conv_search = _conv_bn_relu(channels, hidden, 3)
        self.head = None
        if out_channels is not None:
            self.head = nn.Sequential(*_conv_bn_relu(hidden, hidden, 1), nn.Conv2d(hidden, out_channels, 1))

    def correlate(self, kernel: Tensor, search_feature: Tensor) -> Tensor:
        return depthwise_xcorr(self.conv_search(search_feature), kernel)

    def forward(self, kernel: Tensor, search_feature: Tensor) -> Tensor:
        out = self.correlate(kernel, search_feature)
        return out if self.head is None else self.head(out)


class _RPN(nn.Module):
    def __init__(self, anchor_num: int = 5) -> None:
        super().__init__()
        self.cls = DepthCorr(out_channels=2 * anchor_num)
        self.loc = DepthCorr(out_channels=4 * anchor_num)


class _MaskCorr(nn.Module):
    def __init__(self, out_size: int = 63) -> None:
        super().__init__()
        self.mask = DepthCorr(out_channels=out_size**2)


def _conv_relu_pair(cin: int, mid: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, mid, 3, padding=1), nn.ReLU(), nn.Conv2d(mid, cout, 3, padding=1), nn.ReLU())


class Refine(nn.Module):
    """Top-down refinement from the correlation feature of one cell to a 127x127 mask.

    The defaults are the official widths; siammask-lite passes its narrower skip features
    (stride 2/4/8 channels ``skip``, their adapters' hidden widths ``hidden``) and correlation width.
    """

    def __init__(self, skip: tuple[int, int, int] = (64, 256, 512), hidden: tuple[int, int, int] = (16, 64, 128),
                 corr_channels: int = 256) -> None:
        super().__init__()
        self.v0 = _conv_relu_pair(skip[0], hidden[0], 4)
        self.v1 = _conv_relu_pair(skip[1], hidden[1], 16)
        self.v2 = _conv_relu_pair(skip[2], hidden[2], 32)
        self.h2 = _conv_relu_pair(32, 32, 32)
        self.h1 = _conv_relu_pair(16, 16, 16)
        self.h0 = _conv_relu_pair(4, 4, 4)
        self.deconv = nn.ConvTranspose2d(corr_channels, 32, 15, 15)
        self.post0 = nn.Conv2d(32, 16, 3, padding=1)
        self.post1 = nn.Conv2d(16, 4, 3, padding=1)
        self.post2 = nn.Conv2d(4, 1, 3, padding=1)

    def expand(self, corr: Tensor) -> Tensor:
        """``self.deconv`` of a 1x1 input, (N,C,1,1) -> (N,32,15,15), as the matrix product it is: a
        sixth of the transposed convolution's time in torch, half in ONNX Runtime (same weights, same
        checkpoint keys)."""
        w = self.deconv.weight
        out = corr.flatten(1) @ w.reshape(w.shape[0], -1)
        return out.reshape(-1, *w.shape[1:]) + self.deconv.bias.reshape(1, -1, 1, 1)

    def forward(self, p0: Tensor, p1: Tensor, p2: Tensor, corr: Tensor) -> Tensor:
        """Crops p0 (stride 2, 61x61), p1 (stride 4, 31x31), p2 (stride 8, 15x15) and corr (N,C,1,1)
        -> logits (N,127,127)."""
        out = self.expand(corr)
        out = self.post0(F.interpolate(self.h2(out) + self.v2(p2), size=(31, 31), mode="nearest"))
        out = self.post1(F.interpolate(self.h1(out) + self.v1(p1), size=(61, 61), mode="nearest"))
        out = self.post2(F.interpolate(self.h0(out) + self.v0(p0), size=(127, 127), mode="nearest"))
        return out.reshape(-1, 127, 127)


class TemplateKernels(NamedTuple):
    """Template-only tensors, computed once per object: the three correlation kernels."""

    cls: Tensor
    loc: Tensor
    mask: Tensor


class SearchFeatures(NamedTuple):
    """Per-frame tensors kept for the refine step at the chosen cell."""

    p0: Tensor
    p1: Tensor
    p2: Tensor
    corr: Tensor


def gather_windows(feature: Tensor, pad: int, scale: int, size: int, batch_idx: Tensor,
                   rows: Tensor, cols: Tensor) -> Tensor:
    """Windows ``pad(feature)[b, :, scale*r : scale*r+size, scale*c : scale*c+size]`` for each (b, r, c)."""
    padded = F.pad(feature, [pad, pad, pad, pad])
    crops = [padded[b, :, scale * r: scale * r + size, scale * c: scale * c + size]
             for b, r, c in zip(batch_idx.tolist(), rows.tolist(), cols.tolist(), strict=True)]
    return torch.stack(crops)


def refine_inputs(feats: SearchFeatures, rows: Tensor, cols: Tensor, batch_idx: Tensor | None = None,
                  pads: tuple[int, int, int] = (16, 8, 4)) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The refine module's inputs at cells (batch_idx, row, col): the stride-2/4/8 windows
    (61, 31, 15 px) and the correlation vector. ``pads`` place the windows on the maps (official
    offsets by default; siammask-lite's maps sit one padding step further)."""
    if batch_idx is None:
        batch_idx = torch.arange(rows.shape[0], device=rows.device)
    p0 = gather_windows(feats.p0, pads[0], 4, 61, batch_idx, rows, cols)
    p1 = gather_windows(feats.p1, pads[1], 2, 31, batch_idx, rows, cols)
    p2 = gather_windows(feats.p2, pads[2], 1, 15, batch_idx, rows, cols)
    corr = feats.corr[batch_idx, :, rows, cols].reshape(-1, feats.corr.shape[1], 1, 1)
    return p0, p1, p2, corr


class SiamMaskSharp(nn.Module):
    """The official ``siammask_sharp`` network (``Custom`` in experiments/siammask_sharp)."""

    arch = ARCH_NAME
    refine_pads = (16, 8, 4)  # where refine's windows sit on the stride-2/4/8 maps (``refine_inputs``)

    def __init__(self, anchor_num: int = 5) -> None:
        super().__init__()
        self.features = _Features()
        self.rpn_model = _RPN(anchor_num)
        self.mask_model = _MaskCorr()
        self.refine_model = Refine()

    def template_features(self, z: Tensor) -> Tensor:
        """Template feature map (B,256,7,7): adjust layer, then the official 4-pixel centre crop."""
        f = self.features.downsample.downsample(self.features.features(z)[-1])
        return f[:, :, 4:-4, 4:-4]

    def template(self, z: Tensor) -> TemplateKernels:
        return self.kernels(self.template_features(z))

    def kernels(self, zf: Tensor) -> TemplateKernels:
        """The correlation kernels: the template-side adapters, which need running only once."""
        return TemplateKernels(
            self.rpn_model.cls.conv_kernel(zf),
            self.rpn_model.loc.conv_kernel(zf),
            self.mask_model.mask.conv_kernel(zf),
        )

    def backbone(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Search-branch trunk: stride-2/4/8 maps for refine and the adjusted stride-8 feature."""
        p0, p1, p2, p3 = self.features.features(x)
        return p0, p1, p2, self.features.downsample.downsample(p3)

    def heads(self, feats: tuple[Tensor, Tensor, Tensor, Tensor],
              kernels: TemplateKernels) -> tuple[Tensor, Tensor, SearchFeatures]:
        """Score and box maps plus what refine needs; the 63x63 mask head is not evaluated."""
        p0, p1, p2, xf = feats
        cls = self.rpn_model.cls(kernels.cls, xf)
        loc = self.rpn_model.loc(kernels.loc, xf)
        corr = self.mask_model.mask.correlate(kernels.mask, xf)
        return cls, loc, SearchFeatures(p0, p1, p2, corr)

    def track(self, x: Tensor, kernels: TemplateKernels) -> tuple[Tensor, Tensor, SearchFeatures]:
        return self.heads(self.backbone(x), kernels)

    def refine(self, feats: SearchFeatures, rows: Tensor, cols: Tensor,
               batch_idx: Tensor | None = None) -> Tensor:
        return self.refine_model(*refine_inputs(feats, rows, cols, batch_idx, self.refine_pads))


def build(**cfg) -> SiamMaskSharp:
    """Builder used by the registry and checkpoints (``arch: siammask_sharp``)."""
    return SiamMaskSharp(**cfg)
