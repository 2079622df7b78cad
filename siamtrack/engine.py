"""How a network is run: device placement, precision modes, FLOP counting.

Precision modes:
* ``fp32-reference``: the straightforward eager float32 forward, as the official code runs
  it (autograd on, template-side convolutions and the unused 63x63 mask head evaluated
  every frame); the in-run baseline for speed work;
* ``fp32``: float32 with inference-only rewrites that keep golden equivalence (no
  autograd, BatchNorm folded into convolutions, channels-last, template work at init; on the
  CPU, trunks listed in ``FROZEN_TRUNK_ARCHS`` run as a frozen TorchScript graph);
* ``bf16``: the trunks in bfloat16 (CPUs with native bf16: AVX512-BF16 or AMX; CUDA), heads fp32;
* ``fp16``: the same with float16 (CUDA only);
* ``auto``: fp16 on CUDA; on CPUs with native bf16, bf16 for the official architecture (validated)
  and fp32 for siammask-lite (its masks lose accuracy in bf16); fp32 elsewhere.
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from siamtrack.choices import PRECISIONS
from siamtrack.errors import SiamtrackError
from siamtrack.models import SiamNetwork


def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bf16 dot products natively (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


# Architectures whose bf16 trunk is validated against fp32 (tests/test_bf16.py). siammask-lite loses
# F on the DAVIS dev sequences in bf16 (0.428 -> 0.378 at step 700), so ``auto`` keeps it in fp32.
BF16_AUTO_ARCHS = ("siammask_sharp",)


# Architectures whose trunk runs as a frozen TorchScript graph in the CPU fp32 path. oneDNN then fuses
# each convolution with its activation and keeps the weights pre-packed: siammask-lite's
# inverted-residual trunk (many small, memory-bound layers) runs about 2x faster with identical
# outputs; the ResNet-50 trunk (large compute-bound GEMMs) gains nothing measurable, so it stays eager.
FROZEN_TRUNK_ARCHS = {"siammask_lite": "trunk", "nanotrack_v3": "trunk", "nanotrack_v2": "trunk"}


def choose_precision(precision: str, device: torch.device, arch: str = "siammask_sharp") -> str:
    if precision not in PRECISIONS:
        raise SiamtrackError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "int8":
        raise SiamtrackError("int8 runs on the onnxruntime backend: add --backend onnxruntime")
    if precision == "auto":
        if device.type == "cuda":
            return "fp16"
        return "bf16" if cpu_has_native_bf16() and arch in BF16_AUTO_ARCHS else "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        raise SiamtrackError("bf16 needs a CPU with AVX512-BF16 or AMX (or a GPU); use --precision fp32")
    if precision == "fp16" and device.type != "cuda":
        raise SiamtrackError("fp16 is for CUDA devices; on a CPU use --precision bf16 or fp32")
    return precision


def _to_float(tensors):
    """The same tensor, or (named) tuple of tensors, in float32."""
    if isinstance(tensors, torch.Tensor):
        return tensors.float()
    floats = [t.float() for t in tensors]
    return type(tensors)(*floats) if hasattr(tensors, "_fields") else tuple(floats)


class _HalfTrunk(nn.Module):
    """Runs the template and search trunks under bf16/fp16 autocast, the heads and refine in fp32.

    The trunk is most of the cost and tolerates bf16; the correlation heads and refine
    decide the argmax and the mask boundary, and in bf16 they flip decisions on
    ambiguous frames (measured on the golden sequences), so they stay fp32.
    """

    def __init__(self, net: nn.Module, device_type: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner = net
        self.arch = getattr(net, "arch", type(net).__name__)
        self._device_type = device_type
        self._dtype = dtype

    def _ctx(self):
        return torch.autocast(self._device_type, dtype=self._dtype)

    def template(self, z):
        with self._ctx():
            return _to_float(self.inner.template(z))

    def backbone(self, x):
        with self._ctx():
            return _to_float(self.inner.backbone(x))

    def heads(self, feats, kernels):
        return self.inner.heads(feats, kernels)

    def refine(self, feats, rows, cols, batch_idx=None):
        return self.inner.refine(feats, rows, cols, batch_idx)


class TraceFallbackWarning(UserWarning):
    """A trunk could not be traced and frozen; it runs eagerly (same outputs, slower)."""


class _FrozenTrunk(nn.Module):
    """A trunk traced and frozen once (any batch size or input size reuses the same graph).

    FLOP counting (``count_track_flops``) sets ``eager`` so that the counter sees the operations.
    """

    def __init__(self, trunk: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.eager = False
        self.frozen = None
        failure = None
        example = torch.zeros(1, 3, 255, 255).contiguous(memory_format=torch.channels_last)
        # TorchScript is deprecated in favour of torch.compile, which needs a C++ compiler at run
        # time and minutes of compilation; until a torch without it, use it quietly, else stay eager.
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                traced = torch.jit.trace(trunk, example, check_trace=False)
                self.frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
            except (AttributeError, RuntimeError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                failure = f"{type(trunk).__name__} could not be frozen ({reason}); it runs eagerly, slower"
        if failure:
            warnings.warn(failure, TraceFallbackWarning, stacklevel=2)

    def forward(self, x):
        return self.trunk(x) if self.eager or self.frozen is None else self.frozen(x)


class _Reference(nn.Module):
    """The official per-frame work: kernels recomputed from the template, mask head evaluated."""

    def __init__(self, net: SiamNetwork) -> None:
        super().__init__()
        self.inner = net
        self.arch = getattr(net, "arch", type(net).__name__)

    def template(self, z):
        return self.inner.template_features(z)

    def backbone(self, x):
        return self.inner.backbone(x)

    def heads(self, feats, zf):
        out = self.inner.heads(feats, self.inner.kernels(zf))
        mask_head = getattr(getattr(self.inner, "mask_model", None), "mask", None)
        if mask_head is not None:
            mask_head.head(out[2].corr)  # computed and discarded, as the official tracker does
        return out

    def refine(self, feats, rows, cols, batch_idx=None):
        return self.inner.refine(feats, rows, cols, batch_idx)


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm into the convolution registered right before it (in place).

    The networks register each BatchNorm directly after the convolution that feeds it, whatever
    the names (``conv1``/``bn1``, Lite0's ``_expand_conv``/``_bn0``, Sequential indices), so
    registration order finds every pair; the channel counts must agree as well.
    """
    for child in module.children():
        fold_batchnorm(child)
    names = list(module._modules)
    for conv_name, bn_name in zip(names, names[1:], strict=False):
        conv, bn = module._modules[conv_name], module._modules[bn_name]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and conv.out_channels == bn.num_features:
            module._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
            module._modules[bn_name] = nn.Identity()
    return module


def prepare_network(model: SiamNetwork, device: torch.device, precision: str) -> tuple[nn.Module, str]:
    """Put ``model`` on ``device`` in eval mode, rewritten or wrapped for the chosen precision.

    The caller's module is left untouched (fast paths work on a copy). What comes back offers
    ``template``, ``backbone``, ``heads`` and ``refine``; what ``template`` returns is opaque to
    the caller and goes back into ``heads`` (kernels, or for fp32-reference the template feature).
    """
    mode = choose_precision(precision, device, getattr(model, "arch", ""))
    model = model.to(device).eval()
    if mode == "fp32-reference":
        return _Reference(model), mode
    net = fold_batchnorm(copy.deepcopy(model))
    for p in net.parameters():
        p.requires_grad_(False)
    net = net.to(memory_format=torch.channels_last)
    trunk_name = FROZEN_TRUNK_ARCHS.get(getattr(model, "arch", ""))
    if mode == "fp32" and device.type == "cpu" and trunk_name:
        setattr(net, trunk_name, _FrozenTrunk(getattr(net, trunk_name)))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: autotune once
    if mode in ("bf16", "fp16"):
        return _HalfTrunk(net, device.type, torch.bfloat16 if mode == "bf16" else torch.float16), mode
    return net, mode


def grad_context(precision: str):
    """No autograd on the fast paths; the reference path keeps it, as the official code does."""
    return contextlib.nullcontext() if precision == "fp32-reference" else torch.inference_mode()


def count_track_flops(net: nn.Module, device: torch.device, *, masks: bool = True) -> int:
    """FLOPs of one track step (search backbone, heads, refine at one cell unless the head makes no
    masks) for one object."""
    frozen = [m for m in net.modules() if isinstance(m, _FrozenTrunk)]
    for m in frozen:
        m.eager = True
    try:
        return _count_flops(net, device, masks)
    finally:
        for m in frozen:
            m.eager = False


def _count_flops(net: nn.Module, device: torch.device, masks: bool) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode():
        kernels = net.template(torch.zeros(1, 3, 127, 127, device=device))
        x = torch.zeros(1, 3, 255, 255, device=device)
        counter = FlopCounterMode(display=False)
        with counter:
            feats = net.backbone(x)
            _, _, search = net.heads(feats, kernels)
            if masks:
                cell = torch.tensor([12], device=device)
                net.refine(search, cell, cell)
    return int(counter.get_total_flops())
