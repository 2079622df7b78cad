"""NanoTrack v3 and v2: box-only Siamese trackers on a MobileNetV3-small trunk, anchor-free heads.

Written from the facts of HonglinChu/SiamTrackers (``NanoTrack/``: its backbone, neck, head and
config files), which published the weights these modules load:

* trunk: MobileNetV3-small cut at stride 16 (the last stage's stride 2 made 1), raw 0..255 BGR
  input without normalisation: 127 -> 8x8 template features, 255 -> 16x16 search features;
  v3 adds a ninth block (48 -> 96 channels), v2 ends at 48 channels;
* adjust layer: a 1x1 convolution whose weights the checkpoints carry but which the reference
  network never applies (it runs only when its input and output widths differ, and they do not:
  96/96 and 64/64), so the loader drops ``neck.*`` and the trunk output goes to the head as is
  (checked against the published ONNX graphs, tests/test_nanotrack.py);
* head (BAN style): pixel-wise correlation (every template cell's 1x1-adapted feature dotted
  with every search cell: 64 channels), channel attention; v3 adds a depth-wise correlation with
  the central 4x4 of the template (padding 1) and fuses both; then classification and box towers
  of depth-wise/point-wise convolutions; box outputs go through ``exp``: distances to the left,
  top, right and bottom edges in search-crop pixels. v3 maps are 15x15, v2 maps 16x16.

They implement ``siamtrack.models.SiamNetwork`` without ``refine``: no masks; the tracker's point
decoder (``siamtrack.decoders``) turns the maps into boxes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from siamtrack.models.siammask import depthwise_xcorr

V3, V2 = "nanotrack_v3", "nanotrack_v2"
STRIDE = 16
PAIRWISE = 64  # template cells (8x8) = channels of the pixel-wise correlation

# MobileNetV3-small blocks as the checkpoints store them: kernel, expanded width, output width,
# squeeze-excite width (0: none), hard-swish (else ReLU), stride.
_BLOCKS = (
    (3, 16, 16, 8, False, 2),
    (3, 72, 24, 0, False, 2),
    (3, 88, 24, 0, False, 1),
    (5, 96, 40, 24, True, 2),
    (5, 240, 40, 64, True, 1),
    (5, 240, 40, 64, True, 1),
    (5, 120, 48, 32, True, 1),
    (5, 144, 48, 40, True, 1),
)
_V3_EXTRA = ((5, 288, 96, 72, True, 1),)


def _conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class SqueezeExcite(nn.Module):
    """Channel gates from the global average: Linear, ReLU, Linear, hard sigmoid."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels),
                                nn.Hardsigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.fc(x.mean((2, 3)))[:, :, None, None]


class InvertedResidual(nn.Module):
    """MobileNetV3 block; its layer order (hence the checkpoint indices) depends on whether it expands."""

    def __init__(self, cin: int, k: int, expand: int, cout: int, se: int, hswish: bool, stride: int) -> None:
        super().__init__()
        act = nn.Hardswish if hswish else nn.ReLU
        gate = SqueezeExcite(expand, se) if se else nn.Identity()
        depthwise = _conv_bn(expand, expand, k, stride, groups=expand)
        if expand == cin:
            layers = [*depthwise, act(), gate, *_conv_bn(expand, cout)]
        else:
            layers = [*_conv_bn(cin, expand), act(), *depthwise, gate, act(), *_conv_bn(expand, cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.residual else out


class MobileNetV3Small(nn.Module):
    """The stride-16 trunk: a 3x3 stride-2 stem and the inverted-residual blocks."""

    def __init__(self, blocks: tuple[tuple[int, int, int, int, bool, int], ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(*_conv_bn(3, 16, 3, 2), nn.Hardswish())]
        cin = 16
        for k, expand, cout, se, hswish, stride in blocks:
            layers.append(InvertedResidual(cin, k, expand, cout, se, hswish, stride))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


class ChannelAttention(nn.Module):
    """Gates from the global average through two 1x1 convolutions (with bias) and a sigmoid."""

    def __init__(self, channels: int = PAIRWISE) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels, 1)
        self.fc2 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


def _adapter(channels: int) -> nn.Sequential:
    """1x1 convolution with bias, then BatchNorm: what each correlation applies to each side."""
    return nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels))


def pixelwise_xcorr(search: Tensor, kernel: Tensor) -> Tensor:
    """(B,C,H,W) search, (B,K,C) template cells -> (B,K,H,W): each template cell dotted with each search cell."""
    b, c, h, w = search.shape
    return torch.bmm(kernel, search.reshape(b, c, h * w)).reshape(b, kernel.shape[1], h, w)


class PixelwiseCorr(nn.Module):
    """Pixel-wise correlation, channel attention and (v3 only) a 2x2 depth-wise + 1x1 fusion to 15x15."""

    def __init__(self, channels: int, fuse: bool) -> None:
        super().__init__()
        self.CA_layer = ChannelAttention()
        self.conv_kernel = _adapter(channels)
        self.conv_search = _adapter(channels)
        self.conv = None
        if fuse:
            self.conv = nn.Sequential(nn.Conv2d(PAIRWISE, PAIRWISE, 2, groups=PAIRWISE, bias=False),
                                      nn.BatchNorm2d(PAIRWISE), nn.ReLU6(inplace=True), *_adapter(PAIRWISE))

    def kernel(self, zf: Tensor) -> Tensor:
        """(B,C,8,8) template features -> (B,64,C) adapted cells, once per object."""
        k = self.conv_kernel(zf)
        return k.flatten(2).transpose(1, 2)

    def forward(self, kernel: Tensor, xf: Tensor) -> Tensor:
        out = self.CA_layer(pixelwise_xcorr(self.conv_search(xf), kernel))
        return out if self.conv is None else self.conv(out)


class DepthwiseCorr(nn.Module):
    """v3's depth-wise correlation with the template's central 4x4 cells, search padded by one cell."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_kernel = _adapter(channels)
        self.conv_search = _adapter(channels)

    def kernel(self, zf: Tensor) -> Tensor:
        return self.conv_kernel(zf[:, :, 2:6, 2:6])

    def forward(self, kernel: Tensor, xf: Tensor) -> Tensor:
        return depthwise_xcorr(F.pad(self.conv_search(xf), (1, 1, 1, 1)), kernel)


def _tower_v3(channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(6):
        layers += [*_conv_bn(channels, channels, 3, groups=channels), nn.ReLU6(inplace=True),
                   *_conv_bn(channels, channels)]
    return nn.Sequential(*layers)


def _tower_v2(cin: int, channels: int = 96) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in (cin, *[channels] * 5):
        layers += [nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False),
                   nn.Conv2d(width, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU6(inplace=True)]
    return nn.Sequential(*layers)


class NanoKernels(NamedTuple):
    """Template-only tensors per object: the adapted template of each correlation (v2 leaves dw_* empty)."""

    pw_cls: Tensor
    pw_reg: Tensor
    dw_cls: Tensor
    dw_reg: Tensor


class NanoSearch(NamedTuple):
    """Per-frame tensors kept after the heads: the classification branch's correlation feature
    (the tracker's appearance evidence for the lost-target state)."""

    corr: Tensor


class BanHeadV3(nn.Module):
    """Pixel-wise and depth-wise correlation per branch, fused by a 1x1 convolution, then the towers."""

    def __init__(self, channels: int = 96) -> None:
        super().__init__()
        self.corr_dw_reg = DepthwiseCorr(channels)
        self.corr_pw_reg = PixelwiseCorr(channels, fuse=True)
        self.corr_dw_cls = DepthwiseCorr(channels)
        self.corr_pw_cls = PixelwiseCorr(channels, fuse=True)
        self.cls_tower = _tower_v3(channels)
        self.bbox_tower = _tower_v3(channels)
        self.cls_logits = nn.Sequential(nn.Conv2d(channels, 2, 1))
        self.bbox_pred = nn.Sequential(nn.Conv2d(channels, 4, 1))
        self.down_reg = nn.Sequential(nn.Conv2d(channels + PAIRWISE, channels, 1))
        self.down_cls = nn.Sequential(nn.Conv2d(channels + PAIRWISE, channels, 1))

    def kernels(self, zf: Tensor) -> NanoKernels:
        return NanoKernels(self.corr_pw_cls.kernel(zf), self.corr_pw_reg.kernel(zf),
                           self.corr_dw_cls.kernel(zf), self.corr_dw_reg.kernel(zf))

    def forward(self, xf: Tensor, k: NanoKernels) -> tuple[Tensor, Tensor, NanoSearch]:
        cls = self.down_cls(torch.cat((self.corr_pw_cls(k.pw_cls, xf), self.corr_dw_cls(k.dw_cls, xf)), 1))
        reg = self.down_reg(torch.cat((self.corr_pw_reg(k.pw_reg, xf), self.corr_dw_reg(k.dw_reg, xf)), 1))
        loc = torch.exp(self.bbox_pred(self.bbox_tower(reg)))
        return self.cls_logits(self.cls_tower(cls)), loc, NanoSearch(cls)


class BanHeadV2(nn.Module):
    """Pixel-wise correlation with channel attention per branch, then 64 -> 96 towers (16x16 maps)."""

    def __init__(self, channels: int = 48) -> None:
        super().__init__()
        self.corr_pw_reg = PixelwiseCorr(channels, fuse=False)
        self.corr_pw_cls = PixelwiseCorr(channels, fuse=False)
        self.cls_pw_tower = _tower_v2(PAIRWISE)
        self.bbox_pw_tower = _tower_v2(PAIRWISE)
        self.cls_pred = nn.Sequential(nn.Conv2d(96, 2, 1))
        self.bbox_pred = nn.Sequential(nn.Conv2d(96, 4, 1))

    def kernels(self, zf: Tensor) -> NanoKernels:
        empty = zf.new_zeros(zf.shape[0], 0)
        return NanoKernels(self.corr_pw_cls.kernel(zf), self.corr_pw_reg.kernel(zf), empty, empty)

    def forward(self, xf: Tensor, k: NanoKernels) -> tuple[Tensor, Tensor, NanoSearch]:
        cls = self.corr_pw_cls(k.pw_cls, xf)
        reg = self.corr_pw_reg(k.pw_reg, xf)
        loc = torch.exp(self.bbox_pred(self.bbox_pw_tower(reg)))
        return self.cls_pred(self.cls_pw_tower(cls)), loc, NanoSearch(cls)


class NanoTrack(nn.Module):
    """NanoTrack network: trunk shared by template and search, a BAN head; box maps, no masks.

    ``head_type = "points"``: the tracker decodes its maps with the point (anchor-free) decoder;
    ``score_size`` is the side of its maps.
    """

    head_type = "points"
    stride = STRIDE
    export_layout = "features"  # siamtrack.backends.onnx_export.LAYOUTS

    def __init__(self, version: str = V3) -> None:
        super().__init__()
        if version not in (V3, V2):
            raise ValueError(f"unknown NanoTrack version {version!r}")
        self.arch = version
        self.trunk = MobileNetV3Small(_BLOCKS + (_V3_EXTRA if version == V3 else ()))
        self.ban_head = BanHeadV3() if version == V3 else BanHeadV2()
        self.score_size = 15 if version == V3 else 16

    def template_features(self, z: Tensor) -> Tensor:
        return self.trunk(z)

    def kernels(self, zf: Tensor) -> NanoKernels:
        return self.ban_head.kernels(zf)

    def template(self, z: Tensor) -> NanoKernels:
        return self.kernels(self.template_features(z))

    def backbone(self, x: Tensor) -> Tensor:
        return self.trunk(x)

    def heads(self, feats: Tensor, kernels: NanoKernels) -> tuple[Tensor, Tensor, NanoSearch]:
        """Score logits (B,2,S,S), l/t/r/b distances (B,4,S,S) in crop pixels, the correlation feature."""
        return self.ban_head(feats, kernels)

    def track(self, x: Tensor, kernels: NanoKernels) -> tuple[Tensor, Tensor, NanoSearch]:
        return self.heads(self.backbone(x), kernels)


def build_v3() -> NanoTrack:
    return NanoTrack(V3)


def build_v2() -> NanoTrack:
    return NanoTrack(V2)
