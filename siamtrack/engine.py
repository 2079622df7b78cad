"""How a network is run: device placement, precision modes, FLOP counting.

Precision modes:
* ``fp32-reference``: the plain eager float32 network, the in-run baseline for speed work;
* ``fp32``: float32 with inference-only rewrites that keep golden equivalence;
* ``bf16``: bfloat16 autocast (CPUs with native bf16: AVX512-BF16 or AMX; CUDA);
* ``auto``: fp32 (see ``choose_precision``).
"""

from __future__ import annotations

import torch
from torch import nn

from siamtrack.errors import SiamtrackError

PRECISIONS = ("auto", "fp32", "fp32-reference", "bf16")


def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bf16 dot products natively (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def choose_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise SiamtrackError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        raise SiamtrackError("bf16 needs a CPU with AVX512-BF16 or AMX (or a GPU); use --precision fp32")
    return precision


class _Autocast(nn.Module):
    """Runs the tracker-facing methods of a network under autocast."""

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
            return self.inner.template(z)

    def backbone(self, x):
        with self._ctx():
            return self.inner.backbone(x)

    def heads(self, feats, kernels):
        with self._ctx():
            return self.inner.heads(feats, kernels)

    def refine(self, feats, rows, cols, batch_idx=None):
        with self._ctx():
            return self.inner.refine(feats, rows, cols, batch_idx)


def prepare_network(model: nn.Module, device: torch.device, precision: str) -> tuple[nn.Module, str]:
    """Put ``model`` on ``device`` in eval mode, wrapped for the chosen precision."""
    mode = choose_precision(precision, device)
    net = model.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if mode == "bf16":
        return _Autocast(net, device.type, torch.bfloat16), mode
    return net, mode


def count_track_flops(net: nn.Module, device: torch.device) -> int:
    """FLOPs of one track step (search backbone, heads, refine at one cell) for one object."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode():
        kernels = net.template(torch.zeros(1, 3, 127, 127, device=device))
        x = torch.zeros(1, 3, 255, 255, device=device)
        counter = FlopCounterMode(display=False)
        with counter:
            feats = net.backbone(x)
            _, _, search = net.heads(feats, kernels)
            cell = torch.tensor([12], device=device)
            net.refine(search, cell, cell)
    return int(counter.get_total_flops())
