"""Checkpoint loading for every layout the SiamMask weights come in, never executing code.

Accepted: a flat state dict or ``{'state_dict': ...}`` with other top-level entries
(official training checkpoints, siamtrack's own), keys with or without ``module.``,
with or without ``num_batches_tracked``, legacy (pre-1.6) or zip serialisation,
PySOT's ``siammask_r50_l3`` names and NanoTrack's training checkpoints (which pickle a numpy
scalar: the one global allowed beside tensors and plain containers). Anything that does not match the target network
exactly is an error naming the file and the problem: no partial load.
"""

from __future__ import annotations

import pickle
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from siamtrack.errors import CheckpointError
from siamtrack.models import ARCHS, build_model, nanotrack

# PySOT -> official prefixes (a one-to-one renaming, identical shapes).
PYSOT_PREFIXES = (
    ("backbone.", "features.features."),
    ("neck.", "features."),
    ("rpn_head.", "rpn_model."),
    ("mask_head.", "mask_model.mask."),
    ("refine_head.", "refine_model."),
)
# Official training checkpoints name the class, not the family.
ARCH_ALIASES = {"Custom": "siammask_sharp"}
# NanoTrack keys that tell its versions apart.
NANOTRACK_MARKERS = (("ban_head.down_cls.0.weight", nanotrack.V3), ("ban_head.cls_pw_tower.0.weight", nanotrack.V2))


def _numpy_scalar_globals() -> list:
    """What unpickling one numpy scalar imports: its reconstructor (under the name numpy 1.x and 2.x
    files give it), ``numpy.dtype`` and the float64 dtype class. NanoTrack's checkpoints hold such a
    scalar beside their tensors; every other global stays refused."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import scalar
    return [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
            np.dtype, type(np.dtype(np.float64))]


@dataclass
class LoadedCheckpoint:
    """A network ready for inference plus what the checkpoint says about itself."""

    model: nn.Module
    arch: str
    preset: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` restricted to tensors and plain containers; errors become one line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise CheckpointError(f"{path}: refused to load: it would import {found.group(1)} "
                                  "(a checkpoint may hold only tensors and plain containers)") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (not a torch file, truncated or corrupt)") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError, AttributeError, LookupError,
            AssertionError, struct.error) as exc:  # what torch's readers raise on corrupt or cut files
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {reason}") from None


def extract_state_dict(obj: Any, source: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Find the tensors in a loaded object and normalise their names to the official layout."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: not a checkpoint (top level is {type(obj).__name__}, not a dict)")
    meta = {k: v for k, v in obj.items() if not isinstance(v, torch.Tensor) and k != "state_dict"}
    inner = obj.get("state_dict", obj)
    if not isinstance(inner, dict):
        raise CheckpointError(f"{source}: 'state_dict' entry is {type(inner).__name__}, not a dict")
    tensors = {k: v for k, v in inner.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{source}: not a checkpoint (no tensors found)")
    if inner is obj:
        meta = {}
    state = {k.removeprefix("module."): v for k, v in tensors.items()}
    if any(k.startswith("backbone.") for k in state) and any(k.startswith("rpn_head.") for k in state):
        state = {_pysot_to_official(k): v for k, v in state.items()}
    if any(k.startswith("ban_head.") for k in state):
        state = _nanotrack_keys(state)
    return state, meta


def _nanotrack_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """NanoTrack names: ``backbone.`` is the trunk here (``backbone`` is a method); ``neck.*`` is
    dropped because the reference network never applies it (siamtrack.models.nanotrack)."""
    return {("trunk." + k.removeprefix("backbone.") if k.startswith("backbone.") else k): v
            for k, v in state.items() if not k.startswith("neck.")}


def _pysot_to_official(key: str) -> str:
    for old, new in PYSOT_PREFIXES:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def infer_arch(state: dict[str, torch.Tensor], meta: dict[str, Any], source: str) -> str:
    """The architecture named in the checkpoint, or recognised from its keys."""
    arch = meta.get("arch")
    if isinstance(arch, str):
        arch = ARCH_ALIASES.get(arch, arch)
        if arch in ARCHS:
            return arch
    if any(k.startswith("refine_model.") for k in state) and "features.features.conv1.weight" in state:
        return "siammask_sharp"
    for key, name in NANOTRACK_MARKERS:
        if key in state:
            return name
    if isinstance(arch, str):
        raise CheckpointError(f"{source}: unknown architecture {arch!r}; known: {', '.join(sorted(ARCHS))}")
    return "siammask_sharp"


def _summarise(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every tensor or fail: missing, unexpected or mis-shaped keys are one-line errors.

    ``num_batches_tracked`` is bookkeeping that older torch versions did not save (or saved
    with shape (1,)); it is the only entry allowed to be absent or differently shaped.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_summarise(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_summarise(unexpected)})")
        raise CheckpointError(f"{source}: does not match {getattr(model, 'arch', type(model).__name__)}: "
                              + "; ".join(parts))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape and not k.endswith("num_batches_tracked")]
    if wrong:
        raise CheckpointError(f"{source}: {len(wrong)} tensors have the wrong shape: {_summarise(wrong, 2)}")
    full = dict(expected)
    for k, v in state.items():
        # Old files store num_batches_tracked with shape (1,); it is a counter, reshape it.
        full[k] = v.to(expected[k].dtype).reshape(expected[k].shape)
    model.load_state_dict(full, strict=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Read, recognise and load a checkpoint into a fresh network in eval mode."""
    source = str(path)
    state, meta = extract_state_dict(read_checkpoint(path, map_location), source)
    arch = infer_arch(state, meta, source)
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    try:
        model = build_model(arch, **config)
    except TypeError as exc:
        raise CheckpointError(f"{source}: bad model config for {arch}: {exc}") from None
    load_state_strict(model, state, source)
    preset = meta.get("preset") if isinstance(meta.get("preset"), dict) else None
    return LoadedCheckpoint(model.eval(), arch, preset, meta)
