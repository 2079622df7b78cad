"""Building trackers: a network (registry model, checkpoint or module), a backend, a preset.

``from_pretrained`` / ``from_checkpoint`` / ``build_tracker`` are the ways in for library users
(``import siamtrack``); the commands use them too. They are the seam where a backend is picked
(``siamtrack.backends.prepare``) and handed to the ``Tracker``, which builds none itself.
"""

from __future__ import annotations

from pathlib import Path

import torch

from siamtrack.backends import prepare
from siamtrack.errors import SiamtrackError
from siamtrack.models import SiamNetwork
from siamtrack.presets import DEFAULT_PRESET, Preset, checkpoint_preset, stored_preset
from siamtrack.tracker import Tracker

__all__ = ["build_tracker", "from_checkpoint", "from_pretrained", "load_network", "registry_preset"]


def load_network(name: str | None = None, *, checkpoint: str | Path | None = None,
                 preset: str | Preset | None = None, model_name: str | None = None
                 ) -> tuple[torch.nn.Module, str, str | Preset]:
    """The network of a registry model (``None``: the default) or of a checkpoint file, the name a run
    records, and the preset it tracks with: ``preset`` if given, else the checkpoint's own, else the
    registry entry's (a checkpoint file: the architecture's default)."""
    from siamtrack.weights.loading import load_checkpoint

    if checkpoint is not None:
        loaded = load_checkpoint(checkpoint)
        chosen = (preset or checkpoint_preset(loaded, model_name or Path(checkpoint).stem)
                  or DEFAULT_PRESET.get(loaded.arch, "davis"))
        return loaded.model, model_name or Path(checkpoint).name, chosen
    from siamtrack import weights

    entry = weights.get_entry(name or weights.default_name())
    if entry.format != weights.CHECKPOINT:
        raise SiamtrackError(f"{entry.name} is not a SiamMask checkpoint but {entry.format} files for another "
                             f"tracker ({entry.description}); use --tracker {entry.name} where a command offers it")
    entry, path = weights.resolve(entry.name)
    loaded = load_checkpoint(path)
    return loaded.model, entry.name, preset or checkpoint_preset(loaded, entry.name) or entry.preset


def build_tracker(model: SiamNetwork, preset: str | Preset | dict = "davis", *, device: str | torch.device = "auto",
                  precision: str = "auto", backend: str = "torch", threads: int | None = None,
                  model_name: str | None = None) -> Tracker:
    """A tracker for any network that implements ``siamtrack.models.SiamNetwork``.

    ``backend="onnxruntime"`` runs it in ONNX Runtime on the CPU (exported, and for
    ``precision="int8"`` quantized, on first use and cached; ``threads``: its intra-op threads,
    default torch's); geometry, presets and post-processing are the same for every backend.
    """
    runtime = prepare(model, backend=backend, device=device, precision=precision, threads=threads,
                      model_name=model_name)
    return Tracker(runtime, preset, model_name=model_name)


def from_checkpoint(path: str | Path, *, preset: str | Preset | None = None, device: str | torch.device = "auto",
                    precision: str = "auto", backend: str = "torch", threads: int | None = None,
                    model_name: str | None = None) -> Tracker:
    """A tracker from a checkpoint file of any supported layout."""
    model, name, chosen = load_network(checkpoint=path, preset=preset, model_name=model_name)
    return build_tracker(model, chosen, device=device, precision=precision, backend=backend, threads=threads,
                         model_name=name)


def from_pretrained(name: str | None = None, *, preset: str | Preset | None = None, device: str | torch.device = "auto",
                    precision: str = "auto", backend: str = "torch", threads: int | None = None) -> Tracker:
    """A tracker from a registry name (downloaded if needed); ``None`` is the default model."""
    model, name, chosen = load_network(name, preset=preset)
    return build_tracker(model, chosen, device=device, precision=precision, backend=backend, threads=threads,
                         model_name=name)


def registry_preset(name: str, path: Path | None) -> str:
    """The preset a run of registry model ``name`` tracks with when no ``--preset`` is given: the
    checkpoint's own (``path``, when the file is present), else the registry entry's."""
    from siamtrack import weights
    from siamtrack.weights.loading import extract_state_dict, read_checkpoint

    if path is not None:
        _, meta = extract_state_dict(read_checkpoint(path), str(path))
        stored = stored_preset(meta, name)
        if stored is not None:
            return stored.name
    return weights.get_entry(name).preset
