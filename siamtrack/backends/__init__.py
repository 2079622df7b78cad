"""Backends: how a network runs. Each turns a torch network into the tracker's ``Runtime``.

* ``torch`` (``engine``): eager or frozen torch on the CPU or CUDA, in the precision modes of
  ``siamtrack.backends.engine``; CUDA crops in ``geometry_torch``;
* ``onnxruntime`` (``onnx_runtime``): the network exported once (``onnx_export``), for int8
  quantized once (``onnx_quant``), run by ONNX Runtime on the CPU.

``prepare`` is the one place that picks a backend; the tracker is handed its result.
"""

from __future__ import annotations

import torch

from siamtrack.choices import BACKENDS
from siamtrack.errors import SiamtrackError
from siamtrack.models import SiamNetwork, missing_methods, spec_of
from siamtrack.runtime import Runtime

__all__ = ["prepare", "resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; asking for CUDA without one is a user error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SiamtrackError("CUDA was requested but no CUDA device is available (use --device cpu)")
    return dev


def prepare(model: SiamNetwork, *, backend: str = "torch", device: str | torch.device = "auto",
            precision: str = "auto", threads: int | None = None, model_name: str | None = None) -> Runtime:
    """``model`` ready to track: on ``device`` in ``precision`` with ``backend``.

    ``onnxruntime`` runs on the CPU (exported, and for ``precision="int8"`` quantized, on first use
    and cached; ``threads``: its intra-op threads, default torch's); ``torch`` uses torch's threads.
    """
    spec = spec_of(model)
    missing = missing_methods(model, masks=spec.masks)
    if missing:
        raise SiamtrackError(f"{type(model).__name__} is not a SiamMask network: it lacks {', '.join(missing)} "
                             "(the interface is siamtrack.models.SiamNetwork)")
    if backend not in BACKENDS:
        raise SiamtrackError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "onnxruntime":
        from siamtrack.backends.onnx_runtime import ort_network

        if str(device) not in ("auto", "cpu"):
            raise SiamtrackError("the onnxruntime backend runs on the CPU: use --device cpu (or auto)")
        net, _ = ort_network(model, precision, threads=threads, model_name=model_name or spec.arch)
        return net
    from siamtrack.backends.engine import TorchRuntime

    return TorchRuntime(model, resolve_device(device), precision)
