"""The ``onnxruntime`` backend: the network's calls answered by ONNX Runtime sessions.

The tracker keeps its geometry, presets and post-processing; only the network changes. A
network given to the tracker is exported once (``siamtrack.backends.onnx_export``) into a cache folder
named after its weights (``~/.cache/siamtrack/onnx/<digest>/fp32``, or ``$SIAMTRACK_ONNX_CACHE``)
and, for int8, quantized once beside it (``<digest>/int8``, see ``siamtrack.backends.onnx_quant``); later
runs load the cached graphs. onnxruntime is imported only when this backend is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from collections import namedtuple
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from siamtrack.backends.onnx_export import FORMAT, SIDECAR, layout_of, onnx_missing, read_sidecar
from siamtrack.choices import BACKEND_PRECISIONS
from siamtrack.errors import SiamtrackError
from siamtrack.models import NetworkSpec, spec_of
from siamtrack.styles import Style, context_crops

CACHE_ENV = "SIAMTRACK_ONNX_CACHE"
USER_CACHE = Path("~/.cache/siamtrack/onnx")


def cache_dir() -> Path:
    """Where exported and quantized graphs are kept: ``$SIAMTRACK_ONNX_CACHE`` or the user cache."""
    return Path(os.environ.get(CACHE_ENV) or USER_CACHE).expanduser()


def model_digest(model: nn.Module) -> str:
    """SHA-256 prefix of the architecture, the export format and every tensor of the state dict:
    the same weights find the same cached export whatever file they were loaded from."""
    h = hashlib.sha256(f"{getattr(model, 'arch', type(model).__name__)} format {FORMAT}".encode())
    for key, value in model.state_dict().items():
        t = value.detach().cpu().contiguous()
        h.update(f"{key} {t.dtype} {tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def choose_ort_precision(precision: str) -> str:
    """``auto`` is fp32 (int8 trades accuracy for speed, so it is asked for by name)."""
    if precision == "auto":
        return "fp32"
    if precision not in BACKEND_PRECISIONS["onnxruntime"]:
        raise SiamtrackError(f"the onnxruntime backend runs fp32 or int8, not {precision}")
    return precision


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise onnx_missing() from None
    return onnxruntime


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cached_export(model: nn.Module, precision: str, *, model_name: str | None = None) -> Path:
    """The export folder of ``model`` in ``precision``, made now (with a note on stderr) if not cached."""
    from siamtrack.backends.onnx_export import write_export

    root = cache_dir() / model_digest(model)
    fp32 = root / "fp32"
    meta = {"model": model_name or model.arch}
    if not (fp32 / SIDECAR).is_file():
        _note(f"exporting {meta['model']} to ONNX (once; cached in {fp32})")
        write_export(model, fp32, meta, replace=False)  # a concurrent process's finished export stays
    if precision == "fp32":
        return fp32
    from siamtrack.backends.onnx_quant import calibration_root, write_int8

    int8 = root / "int8"
    if not (int8 / SIDECAR).is_file():
        source = calibration_root()
        _note(f"quantizing {meta['model']} to int8 with crops from {source} (once; cached in {int8})")
        write_int8(fp32, int8, source, replace=False)
    return int8


class OrtNetwork:
    """An export folder run by ONNX Runtime as the tracker's ``Runtime`` (``spec``: the exported
    network's), torch tensors in and out of the network calls.

    Any layout (``onnx_export.LAYOUTS``): the template graph's outputs, by name, are what the tracker
    keeps per object and what the search graph takes beside the crop; the search graph's outputs
    after the score and box maps are the search features (``corr``, the appearance evidence, among
    them), which refine reads by name. The crops stay numpy (NCHW float32, what the graphs take)
    and ``backbone`` only hands them over: the search graph holds trunk and heads together and runs
    in ``heads``, once per crop. ``graph_seconds`` accumulates the time spent in each graph.
    """

    backend = "onnxruntime"
    device = torch.device("cpu")

    def __init__(self, folder: str | Path, threads: int | None = None, spec: NetworkSpec | None = None) -> None:
        ort = _import_ort()
        self.folder = Path(folder)
        self.sidecar = read_sidecar(self.folder)
        self.arch = self.sidecar["arch"]
        self.spec = spec or NetworkSpec(self.arch)
        self.precision = self.sidecar.get("precision", "fp32")
        self.threads = int(threads or torch.get_num_threads())
        io = layout_of(self.sidecar).io
        self._template_type = namedtuple("OrtTemplate", io["template"][1])
        self._search_type = namedtuple("OrtSearch", io["search"][1][2:])
        self._refine_inputs = io["refine"][0][:-2] if "refine" in io else ()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only: the graph notes ORT prints are not the user's business
        # Idle threads sleep instead of spinning: the tracker's own work between runs (crops,
        # post-processing) and the decoder and writer threads keep the cores.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sessions = {}
        for graph, info in self.sidecar["graphs"].items():
            self.sessions[graph] = ort.InferenceSession(str(self.folder / info["file"]), opts,
                                                        providers=["CPUExecutionProvider"])
        self.graph_seconds = {graph: 0.0 for graph in self.sessions}

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        t0 = time.perf_counter()
        out = self.sessions[graph].run(None, feeds)
        self.graph_seconds[graph] += time.perf_counter() - t0
        return out

    def flops_per_step(self) -> int:
        """Network FLOPs of one track step for one object, counted on the torch network at export."""
        return int(self.sidecar["flops_per_step"])

    def crops(self, frame: np.ndarray, centers: Sequence[np.ndarray], sides: Sequence[float], out_size: int,
              pad: np.ndarray, style: Style) -> np.ndarray:
        return np.ascontiguousarray(context_crops(frame, centers, sides, out_size, pad, style)
                                    .transpose(0, 3, 1, 2), dtype=np.float32)

    def inference(self) -> AbstractContextManager:
        return contextlib.nullcontext()

    def sync(self) -> None:
        """Nothing to wait for: ONNX Runtime's CPU calls return when done."""

    def template(self, z: Tensor | np.ndarray) -> tuple[Tensor, ...]:
        """The template graph's outputs (a named tuple of them) for crops ``z``."""
        return self._template_type(*(torch.from_numpy(k) for k in self._run("template", {"z": _array(z)})))

    def backbone(self, x: Tensor) -> np.ndarray:
        return _array(x)

    def heads(self, crops: np.ndarray, kernels: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        ks = {n: _array(k) for n, k in kernels._asdict().items()}
        runs = [self._run("search", {"x": crops[j:j + 1], **{n: k[j:j + 1] for n, k in ks.items()}})
                for j in range(len(crops))]
        joined = [torch.from_numpy(parts[0] if len(parts) == 1 else np.concatenate(parts))
                  for parts in zip(*runs, strict=True)]
        return joined[0], joined[1], self._search_type(*joined[2:])

    def refine(self, feats: tuple[Tensor, ...], rows: Tensor, cols: Tensor,
               batch_idx: Tensor | None = None) -> Tensor:
        maps = {n: _array(getattr(feats, n)) for n in self._refine_inputs}
        batch = range(len(rows)) if batch_idx is None else batch_idx.tolist()
        masks = []
        for b, r, c in zip(batch, rows.tolist(), cols.tolist(), strict=True):
            feeds = {n: m[b:b + 1] for n, m in maps.items()}
            (mask,) = self._run("refine", {**feeds, "row": np.array([r], np.int64), "col": np.array([c], np.int64)})
            masks.append(mask)
        return torch.from_numpy(np.concatenate(masks))


def _array(t: Tensor | np.ndarray) -> np.ndarray:
    """A C-contiguous float32 (or int64) array of a CPU tensor, without a copy where it already is one."""
    a = t.numpy() if isinstance(t, Tensor) else t
    return np.ascontiguousarray(a)


def ort_network(model: nn.Module, precision: str, *, threads: int | None = None,
                model_name: str | None = None) -> tuple[OrtNetwork, str]:
    """``model`` as an :class:`OrtNetwork` in ``precision`` (exported and quantized on first use)."""
    _import_ort()
    mode = choose_ort_precision(precision)
    folder = cached_export(model, mode, model_name=model_name)
    return OrtNetwork(folder, threads, spec_of(model)), mode
