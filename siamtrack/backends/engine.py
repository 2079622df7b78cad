"""How a network is run: device placement, precision modes, FLOP counting.

Precision modes:
* ``fp32-reference``: the straightforward eager float32 forward, as the official code runs
  it (autograd on, template-side convolutions and the unused 63x63 mask head evaluated
  every frame); the in-run baseline for speed work;
* ``fp32``: float32 with inference-only rewrites that keep golden equivalence (no
  autograd, BatchNorm folded into convolutions, channels-last, template work at init; on the
  CPU, trunks listed in ``FROZEN_TRUNK_ARCHS`` run as a frozen TorchScript graph);
* ``bf16``: the search trunk in bfloat16 (CPUs with native bf16: AVX512-BF16 or AMX; CUDA), the
  template, heads and refine in fp32, and a frame whose decision is a near-tie re-decided in fp32;
* ``fp16``: the same with float16 (CUDA only);
* ``auto``: fp16 on CUDA; bf16 for the official architecture on CPUs with native bf16 (validated
  and measured faster); fp32 elsewhere (see ``auto_precision``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import warnings
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from siamtrack.choices import PRECISIONS
from siamtrack.errors import SiamtrackError
from siamtrack.models import NetworkSpec, SiamNetwork, spec_of
from siamtrack.styles import Style, context_crops


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return frozenset(next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), []))
    except OSError:
        return frozenset()


def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bf16 dot products natively (AVX512-BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


# Architectures whose bf16 trunk is validated against fp32 (tests/test_bf16.py). siammask-lite loses
# F on the DAVIS dev sequences in bf16 (0.428 -> 0.378 at step 700), so ``auto`` keeps it in fp32.
BF16_AUTO_ARCHS = ("siammask_sharp",)

# A half-precision decision whose top two candidate cells are closer than this in penalised score
# is re-made in fp32. bf16 moves a top cell's penalised score by at most 0.0029 (95th percentile
# 0.0021) on the golden sequences and 0.0020 on training sequences (official architecture,
# teacher-forced); the frames where it picked another cell had fp32 margins of 4e-5 to 9e-5, true
# near-ties that no bf16 layer choice avoids (docs/eval.md, "bf16 and the arg-max").
HALF_DECISION_MARGIN = 0.002


# Architectures whose trunk runs as a frozen TorchScript graph in the CPU fp32 path. oneDNN then fuses
# each convolution with its activation and keeps the weights pre-packed: siammask-lite's
# inverted-residual trunk (many small, memory-bound layers) runs about 2x faster with identical
# outputs; the ResNet-50 trunk (large compute-bound GEMMs) gains nothing measurable, so it stays eager.
FROZEN_TRUNK_ARCHS = {"siammask_lite": "trunk", "nanotrack_v3": "trunk", "nanotrack_v2": "trunk",
                      "siammask_nano": "trunk"}


def choose_precision(precision: str, device: torch.device, arch: str = "siammask_sharp") -> str:
    if precision not in PRECISIONS:
        raise SiamtrackError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "int8":
        raise SiamtrackError("int8 runs on the onnxruntime backend: add --backend onnxruntime")
    if precision == "auto":
        return auto_precision(device, arch)
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        raise SiamtrackError("bf16 needs a CPU with AVX512-BF16 or AMX (or a GPU); use --precision fp32")
    if precision == "fp16" and device.type != "cuda":
        raise SiamtrackError("fp16 is for CUDA devices; on a CPU use --precision bf16 or fp32")
    return precision


def auto_precision(device: torch.device, arch: str) -> str:
    """What ``--precision auto`` runs: the fastest mode whose decisions are validated against fp32.

    CUDA: fp16. CPUs with native bf16 (AMX, or AVX512-BF16 as on Zen 4): bf16 for the architectures
    in ``BF16_AUTO_ARCHS`` -- tests/test_bf16.py holds their decisions and masks to fp32's there
    (run on AMX and with oneDNN restricted to AVX512-BF16), and the official trunk runs 1.6x (Zen 4)
    or more (AMX) faster. Other CPUs: fp32, since bf16 would be emulated and slower.
    """
    if device.type == "cuda":
        return "fp16"
    return "bf16" if cpu_has_native_bf16() and arch in BF16_AUTO_ARCHS else "fp32"


def _to_float(tensors):
    """The same tensor, or (named) tuple of tensors, in float32."""
    if isinstance(tensors, torch.Tensor):
        return tensors.float()
    floats = [t.float() for t in tensors]
    return type(tensors)(*floats) if hasattr(tensors, "_fields") else tuple(floats)


class _HalfTrunk(nn.Module):
    """Runs the search trunk under bf16/fp16 autocast; the template, heads and refine in fp32.

    The search trunk is most of the per-frame cost and tolerates bf16. The template runs once
    per object, so it stays fp32: its kernels then serve ``exact_backbone`` too. The heads and
    refine decide the arg-max and the mask boundary and stay fp32. What half precision still
    moves (the trunk's features) can only flip a decision that is a near-tie: the tracker
    re-decides those (``decision_margin``) with ``exact_backbone``, the same trunk in fp32.
    """

    decision_margin = HALF_DECISION_MARGIN

    def __init__(self, net: nn.Module, device_type: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner = net
        self.arch = getattr(net, "arch", type(net).__name__)
        self._device_type = device_type
        self._dtype = dtype

    def _ctx(self):
        return torch.autocast(self._device_type, dtype=self._dtype)

    def template(self, z):
        return self.inner.template(z)

    def backbone(self, x):
        with self._ctx():
            return _to_float(self.inner.backbone(x))

    def exact_backbone(self, x):
        return self.inner.backbone(x)

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


class TorchRuntime:
    """A network prepared by ``prepare_network`` as the tracker's ``Runtime``: crops cut on the CPU,
    or on the GPU from one upload of the frame; calls under ``grad_context``."""

    backend = "torch"
    threads = None  # torch's process-wide setting (torch.set_num_threads)

    def __init__(self, model: SiamNetwork, device: torch.device, precision: str) -> None:
        self.spec: NetworkSpec = spec_of(model)
        self.device = device
        self.net, self.precision = prepare_network(model, device, precision)

    @property
    def decision_margin(self) -> float | None:
        """A half-precision network's: decisions closer than this are made again by ``exact_backbone``."""
        return getattr(self.net, "decision_margin", None)

    def exact_backbone(self, x: torch.Tensor) -> Any:
        return self.net.exact_backbone(x)

    def crops(self, frame: np.ndarray, centers: Sequence[np.ndarray], sides: Sequence[float], out_size: int,
              pad: np.ndarray, style: Style) -> torch.Tensor:
        if self.device.type == "cuda":
            from siamtrack.backends.geometry_torch import context_crop_torch

            ft = torch.from_numpy(frame).to(self.device, non_blocking=True)
            batch = torch.stack([context_crop_torch(ft, c, s, out_size, pad, style.half_up, truncate=style.truncate)
                                 for c, s in zip(centers, sides, strict=True)])
        else:
            batch = torch.from_numpy(context_crops(frame, centers, sides, out_size, pad, style))
        return batch.permute(0, 3, 1, 2).float()

    def inference(self) -> AbstractContextManager:
        return grad_context(self.precision)

    def template(self, z: torch.Tensor) -> Any:
        return self.net.template(z)

    def backbone(self, x: torch.Tensor) -> Any:
        return self.net.backbone(x)

    def heads(self, feats: Any, kernels: Any) -> tuple[torch.Tensor, torch.Tensor, Any]:
        return self.net.heads(feats, kernels)

    def refine(self, feats: Any, rows: torch.Tensor, cols: torch.Tensor,
               batch_idx: torch.Tensor | None = None) -> torch.Tensor:
        return self.net.refine(feats, rows, cols, batch_idx)

    def flops_per_step(self) -> int:
        return count_track_flops(self.net, self.device, masks=self.spec.masks)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
