"""Pure networks. ``build_model`` dispatches on the architecture name stored in a checkpoint."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from siamtrack.models import lite, siammask

ARCHS: dict[str, Callable[..., nn.Module]] = {
    siammask.ARCH_NAME: siammask.build,
    lite.ARCH_NAME: lite.build,
}


def build_model(arch: str, **cfg) -> nn.Module:
    """Instantiate a network by architecture name (``siammask_sharp``, ``siammask_lite``)."""
    try:
        builder = ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHS))}") from None
    return builder(**cfg)
