"""Pure networks. ``build_model`` dispatches on the architecture name stored in a checkpoint;
``SiamNetwork`` is the interface every architecture implements and the tracker relies on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from siamtrack.models import lite, nanotrack, siammask, siammask_nano
from siamtrack.models.siammask import SearchFeatures, TemplateKernels

ARCHS: dict[str, Callable[..., nn.Module]] = {
    siammask.ARCH_NAME: siammask.build,
    lite.ARCH_NAME: lite.build,
    nanotrack.V3: nanotrack.build_v3,
    nanotrack.V2: nanotrack.build_v2,
    siammask_nano.ARCH_NAME: siammask_nano.build,
}


@runtime_checkable
class SiamNetwork(Protocol):
    """What the tracker, the inference engine and training call on a network (docs/architecture.md).

    Inputs are raw 0..255 BGR float crops (template 127x127, search 255x255); any normalisation
    lives inside the network. The template side is split in two so that the fp32-reference path
    can recompute the kernels every frame, as the official tracker does; ``template`` and ``track``
    are the compositions the fast path and training use.
    """

    def template_features(self, z: Tensor) -> Tensor:
        """Template feature map (B,C,7,7) of crops (B,3,127,127)."""
        ...

    def kernels(self, zf: Tensor) -> TemplateKernels:
        """The three correlation kernels of a template feature map."""
        ...

    def template(self, z: Tensor) -> TemplateKernels:
        """``kernels(template_features(z))``: everything that depends only on the template."""
        ...

    def backbone(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Search crops (B,3,255,255) -> stride-2/4/8 skip maps and the adjusted stride-8 feature."""
        ...

    def heads(self, feats: tuple[Tensor, Tensor, Tensor, Tensor],
              kernels: TemplateKernels) -> tuple[Tensor, Tensor, SearchFeatures]:
        """Score (B,10,25,25) and box (B,20,25,25) maps, and what ``refine`` needs."""
        ...

    def track(self, x: Tensor, kernels: TemplateKernels) -> tuple[Tensor, Tensor, SearchFeatures]:
        """``heads(backbone(x), kernels)``."""
        ...

    def refine(self, feats: SearchFeatures, rows: Tensor, cols: Tensor,
               batch_idx: Tensor | None = None) -> Tensor:
        """Mask logits (N,127,127) at response cells (batch_idx, row, col); None: one cell per sample."""
        ...


NETWORK_METHODS = tuple(name for name, member in vars(SiamNetwork).items()
                        if callable(member) and not name.startswith("_"))


def missing_methods(model: object, *, masks: bool = True) -> list[str]:
    """The ``SiamNetwork`` methods ``model`` lacks (empty when it implements the interface).

    ``masks=False``: a box-only network (its head decoder makes no masks) needs no ``refine``.
    """
    needed = NETWORK_METHODS if masks else tuple(n for n in NETWORK_METHODS if n != "refine")
    return [name for name in needed if not callable(getattr(model, name, None))]


@dataclass(frozen=True)
class NetworkSpec:
    """What the tracker needs to know of a network besides its calls: its architecture name and head
    type (``anchors``: SiamMask's RPN; ``points``: an anchor-free head with ``score_size`` x
    ``score_size`` maps ``stride`` crop pixels apart) and whether it refines masks. A backend keeps it
    when the torch module is gone (ONNX Runtime), so the decoder is chosen the same way."""

    arch: str
    head_type: str = "anchors"
    score_size: int | None = None
    stride: int | None = None
    masks: bool = True


def spec_of(model: Any) -> NetworkSpec:
    """The ``NetworkSpec`` a network declares (SiamMask networks declare only ``arch``)."""
    head = getattr(model, "head_type", "anchors")
    return NetworkSpec(getattr(model, "arch", type(model).__name__), head, getattr(model, "score_size", None),
                       getattr(model, "stride", None), bool(getattr(model, "masks", head == "anchors")))


def build_model(arch: str, **cfg) -> nn.Module:
    """Instantiate a network by architecture name (``siammask_sharp``, ``siammask_lite``, ``siammask_nano``, ...)."""
    try:
        builder = ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHS))}") from None
    return builder(**cfg)
