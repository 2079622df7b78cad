"""ONNX graphs of a Siamese network, for ONNX Runtime, OpenVINO, TensorRT or a browser.

The graphs are split where the tracker's own decisions sit between them (docs/cli.md). How a
network splits is its ``export_layout`` (``LAYOUTS``; SiamMask's when it declares none):

* ``kernels`` (SiamMask, siammask-lite): ``template.onnx`` ``z`` (N,3,127,127) -> ``cls_kernel``,
  ``loc_kernel``, ``mask_kernel``, once per object; ``search.onnx`` ``x`` (1,3,255,255) and one object's
  kernels -> ``cls`` (1,10,25,25), ``loc`` (1,20,25,25) and what refine needs (``p0``, ``p1``, ``p2``,
  ``corr``), every frame; ``refine.onnx`` those four and the chosen cell ``row``, ``col`` (int64, shape
  (1,)) -> ``mask`` logits (1,127,127): the windows around the cell are cut inside the graph.
* ``features`` (NanoTrack, boxes only): ``template.onnx`` ``z`` -> ``zf``, the template features;
  ``search.onnx`` ``x`` and one object's ``zf`` -> ``cls``, ``loc`` (l/t/r/b) and ``corr`` (the
  appearance evidence); the template-side adapters run inside it.
* ``features-refine`` (siammask-nano): ``features`` whose search graph also gives ``p0``, ``p1``,
  ``p2`` and the per-point ``mask_feature``, and ``refine.onnx`` (those four, ``row``, ``col`` -> ``mask``).

Crops are raw BGR float32 0..255, NCHW, as the tracker feeds every architecture. The search graph
holds one object: the depth-wise correlation is a grouped convolution whose group count (batch x
channels) ONNX fixes in the graph, so several objects are several runs. The search graph's outputs
that refine reads carry the names of refine's inputs. A sidecar JSON (``siamtrack-onnx.json``)
records the layout, architecture, preset, input sizes, the FLOPs of a step and the siamtrack
version. onnx is imported only here, when exporting.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from siamtrack.atomic import atomic_folder
from siamtrack.errors import SiamtrackError
from siamtrack.models import spec_of
from siamtrack.models.nanotrack import DepthwiseCorr
from siamtrack.models.siammask import Refine, TemplateKernels

SIDECAR = "siamtrack-onnx.json"
GRAPHS = ("template", "search", "refine")  # every layout's graphs are among these
OPSET = 17
# Bumped when the graphs change: the cached exports of older versions are not reused.
FORMAT = 5
KERNELS = ("cls_kernel", "loc_kernel", "mask_kernel")
FEATURES = ("p0", "p1", "p2", "corr")
IMAGE_LAYOUT = "NCHW float32, BGR, raw 0..255 (no normalisation: the graph holds it)"


def onnx_missing() -> SiamtrackError:
    """The one-line error for a missing ``onnx`` extra."""
    return SiamtrackError("ONNX export and the onnxruntime backend need onnx and onnxruntime: "
                          "pip install 'siamtrack[onnx]'")


class _Template(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return tuple(self.net.template(z))


class _BoxTemplate(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, z: Tensor) -> Tensor:
        return self.net.template_features(z)


class _BoxSearch(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, zf: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        cls, loc, search = self.net.track(x, self.net.kernels(zf))
        return cls, loc, search.corr


class _PaddedDepthwiseCorr(DepthwiseCorr):
    """NanoTrack v3's depth-wise correlation as exported: its one-cell zero padding as the
    convolution's own padding rather than a Pad node before it (the same outputs; ONNX Runtime folds
    no Pad into a convolution whose weights are an input: 2-3 % of the v3 search graph, measured)."""

    def __init__(self, corr: DepthwiseCorr) -> None:
        nn.Module.__init__(self)
        self.conv_kernel, self.conv_search = corr.conv_kernel, corr.conv_search

    def forward(self, kernel: Tensor, xf: Tensor) -> Tensor:
        search = self.conv_search(xf)
        b, c = kernel.shape[:2]
        out = F.conv2d(search.reshape(1, b * c, *search.shape[2:]), kernel.reshape(b * c, 1, *kernel.shape[2:]),
                       groups=b * c, padding=1)
        return out.reshape(b, c, *out.shape[2:])


def _export_forms(module: nn.Module) -> None:
    """Replace (in place) the modules that have a faster equivalent graph form."""
    for name, child in module.named_children():
        if type(child) is DepthwiseCorr:
            setattr(module, name, _PaddedDepthwiseCorr(child))
        else:
            _export_forms(child)


class _Search(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, cls_kernel: Tensor, loc_kernel: Tensor, mask_kernel: Tensor) -> tuple[Tensor, ...]:
        cls, loc, feats = self.net.track(x, TemplateKernels(cls_kernel, loc_kernel, mask_kernel))
        return cls, loc, *feats


def window_at(feature: Tensor, pad: int, scale: int, size: int, row: Tensor, col: Tensor) -> Tensor:
    """``pad(feature)[:, :, scale*row : scale*row+size, scale*col : scale*col+size]`` with the cell as
    tensors (two gathers), so that it traces into a graph whose cell is an input."""
    padded = F.pad(feature, [pad, pad, pad, pad])
    offsets = torch.arange(size, device=feature.device)
    return padded.index_select(2, scale * row + offsets).index_select(3, scale * col + offsets)


class _RefineAt(nn.Module):
    """The refine module at one cell of one search: the windows of ``refine_inputs``, cut by gathers."""

    def __init__(self, refine: Refine, pads: tuple[int, int, int]) -> None:
        super().__init__()
        self.refine = refine
        self.pads = pads

    def forward(self, p0: Tensor, p1: Tensor, p2: Tensor, corr: Tensor, row: Tensor, col: Tensor) -> Tensor:
        w0 = window_at(p0, self.pads[0], 4, 61, row, col)
        w1 = window_at(p1, self.pads[1], 2, 31, row, col)
        w2 = window_at(p2, self.pads[2], 1, 15, row, col)
        return self.refine(w0, w1, w2, corr.index_select(2, row).index_select(3, col))


def _refine_module(net: nn.Module) -> Refine:
    found = [m for m in net.modules() if isinstance(m, Refine)]
    if len(found) != 1:
        raise ValueError(f"{type(net).__name__}: expected one Refine module, found {len(found)}")
    return found[0]


class _PointMaskSearch(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, zf: Tensor) -> tuple[Tensor, ...]:
        cls, loc, search = self.net.track(x, self.net.kernels(zf))
        return cls, loc, *search  # p0, p1, p2, corr, mask: the layout's output order


class _PointRefineAt(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, p0: Tensor, p1: Tensor, p2: Tensor, mask_feature: Tensor, row: Tensor, col: Tensor) -> Tensor:
        return self.net.refine_at(p0, p1, p2, mask_feature, row, col)


def _kernel_modules(net: nn.Module) -> dict[str, nn.Module]:
    return {"template": _Template(net), "search": _Search(net),
            "refine": _RefineAt(_refine_module(net), tuple(net.refine_pads))}


def _kernel_inputs(model: nn.Module, z: Tensor, x: Tensor) -> dict[str, tuple[Tensor, ...]]:
    kernels = tuple(model.template(z))
    feats = tuple(model.track(x, TemplateKernels(*kernels))[2])
    return {"template": (z,), "search": (x, *kernels), "refine": (*feats, torch.tensor([12]), torch.tensor([9]))}


def _feature_inputs(model: nn.Module, z: Tensor, x: Tensor) -> dict[str, tuple[Tensor, ...]]:
    return {"template": (z,), "search": (x, model.template_features(z))}


def _feature_refine_inputs(model: nn.Module, z: Tensor, x: Tensor) -> dict[str, tuple[Tensor, ...]]:
    inputs = _feature_inputs(model, z, x)
    _, _, s = model.track(x, model.kernels(inputs["search"][1]))
    return {**inputs, "refine": (s.p0, s.p1, s.p2, s.mask, torch.tensor([9]), torch.tensor([5]))}


@dataclass(frozen=True)
class Layout:
    """How a network splits into graphs: their names, inputs and outputs, the modules traced, the
    example inputs, and what int8 quantizes (``siamtrack.backends.onnx_quant``)."""

    io: dict[str, tuple[list[str], list[str]]]  # graph -> (input names, output names), in run order
    modules: Callable[[nn.Module], dict[str, nn.Module]]
    inputs: Callable[[nn.Module, Tensor, Tensor], dict[str, tuple[Tensor, ...]]]
    quantized: tuple[str, ...]  # graphs int8 quantizes
    float_trunk: bool  # the trunk's nodes stay float in int8 (onnx_quant.BOX_INT8_NOTE)
    int8_note: str

    @property
    def graphs(self) -> tuple[str, ...]:
        return tuple(self.io)


_REFINE_FLOAT = ("refine runs in float: its layers are narrow (4-32 channels), where int8 saves little time, "
                 "and it draws the mask boundary")
_FLOAT_TRUNK = ("the head is int8, its correlations included (their template side is made in the same graph); "
                "the trunk (the template graph, the start of the search graph) runs in float: an int8 "
                "MobileNetV3 trunk was slower than float and lost accuracy")
LAYOUTS: dict[str, Layout] = {
    "kernels": Layout(
        {"template": (["z"], list(KERNELS)), "search": (["x", *KERNELS], ["cls", "loc", *FEATURES]),
         "refine": ([*FEATURES, "row", "col"], ["mask"])},
        _kernel_modules, _kernel_inputs, ("template", "search"), False, _REFINE_FLOAT),
    "features": Layout(
        {"template": (["z"], ["zf"]), "search": (["x", "zf"], ["cls", "loc", "corr"])},
        lambda net: {"template": _BoxTemplate(net), "search": _BoxSearch(net)},
        _feature_inputs, ("search",), True, _FLOAT_TRUNK),
    "features-refine": Layout(
        {"template": (["z"], ["zf"]), "search": (["x", "zf"], ["cls", "loc", "p0", "p1", "p2", "corr", "mask_feature"]),
         "refine": (["p0", "p1", "p2", "mask_feature", "row", "col"], ["mask"])},
        lambda net: {"template": _BoxTemplate(net), "search": _PointMaskSearch(net), "refine": _PointRefineAt(net)},
        _feature_refine_inputs, ("search",), True, _FLOAT_TRUNK + "; " + _REFINE_FLOAT),
}


def layout_name(model: nn.Module) -> str:
    """The export layout ``model`` declares (``export_layout``; SiamMask's ``kernels`` if none)."""
    name = getattr(model, "export_layout", "kernels")
    if name not in LAYOUTS:
        raise ValueError(f"{type(model).__name__}: unknown export layout {name!r}; known: {', '.join(LAYOUTS)}")
    return name


def layout_of(sidecar: dict[str, Any]) -> Layout:
    """The layout an export's sidecar records."""
    return LAYOUTS[sidecar["layout"]]


def graph_modules(model: nn.Module, *, export_forms: bool = False) -> dict[str, nn.Module]:
    """The exported computations as modules over a BatchNorm-folded copy of ``model`` (``export_forms``:
    with the graph forms of ``_export_forms``, as traced; without them, the network as it runs in torch,
    which the exported graphs are checked against)."""
    from siamtrack.backends.engine import fold_batchnorm

    net = fold_batchnorm(copy.deepcopy(model).float().eval())
    if export_forms:
        _export_forms(net)
    for p in net.parameters():
        p.requires_grad_(False)
    return LAYOUTS[layout_name(model)].modules(net)


def example_inputs(model: nn.Module, seed: int = 0) -> dict[str, tuple[Tensor, ...]]:
    """Inputs of each graph (crops of random pixels; features from the model), for tracing and checks."""
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(1, 3, 127, 127, generator=g) * 255
    x = torch.rand(1, 3, 255, 255, generator=g) * 255
    with torch.inference_mode():
        return LAYOUTS[layout_name(model)].inputs(model.eval(), z, x)


def _shapes(names: list[str], tensors: tuple[Tensor, ...], batch: str | None) -> dict[str, Any]:
    out = {}
    for name, t in zip(names, tensors, strict=True):
        shape: list[Any] = list(t.shape)
        if batch is not None:
            shape[0] = batch
        dtype = str(t.dtype).removeprefix("torch.")
        layout = IMAGE_LAYOUT if name in ("z", "x") else ("cell index" if t.dtype == torch.int64 else "NCHW")
        out[name] = {"shape": shape, "dtype": dtype, "layout": layout}
    return out


def export_graphs(model: nn.Module, out: Path, *, opset: int = OPSET) -> dict[str, Any]:
    """Write the three graphs of ``model`` (float32) into the folder ``out``; their input/output description."""
    modules = graph_modules(model, export_forms=True)
    inputs = example_inputs(model)
    described = {}
    for graph, (names_in, names_out) in LAYOUTS[layout_name(model)].io.items():
        batch = "N" if graph == "template" else None
        dynamic = {n: {0: "N"} for n in names_in + names_out} if batch else None
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
            outputs = modules[graph](*inputs[graph])
            torch.onnx.export(modules[graph], inputs[graph], str(out / f"{graph}.onnx"), dynamo=False,
                              opset_version=opset, input_names=names_in, output_names=names_out,
                              dynamic_axes=dynamic, do_constant_folding=True)
        _tidy(out / f"{graph}.onnx")
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        described[graph] = {"file": f"{graph}.onnx", "inputs": _shapes(names_in, inputs[graph], batch),
                            "outputs": _shapes(names_out, outputs, batch)}
    return described


def _tidy(path: Path) -> None:
    """Give every node its own constants and drop the unused ones.

    The exporter shares equal constants through Identity nodes (all-zero biases of folded
    BatchNorms, for instance); quantization then sees a bias that is not a constant and leaves
    the convolution in float, so each such Identity becomes a copy of its constant. The
    constants no node reads any more (and those left behind by folding) are dropped.
    """
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    for node in [n for n in graph.node if n.op_type == "Identity" and n.input[0] in constants]:
        copy_ = onnx.TensorProto()
        copy_.CopyFrom(constants[node.input[0]])
        copy_.name = node.output[0]
        graph.initializer.append(copy_)
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for t in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(t)
    onnx.save(model, str(path))


def check_graphs(folder: Path, model: nn.Module, threads: int = 1) -> dict[str, float]:
    """``onnx.checker`` on every graph, then one run of each in ONNX Runtime against the torch module:
    the largest absolute difference per graph. Raises if a graph is invalid."""
    import onnx
    import onnxruntime as ort

    modules = graph_modules(model)
    inputs = example_inputs(model, seed=1)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    diffs = {}
    for graph, (names_in, _) in LAYOUTS[layout_name(model)].io.items():
        path = folder / f"{graph}.onnx"
        onnx.checker.check_model(str(path), full_check=True)
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        got = session.run(None, {n: t.numpy() for n, t in zip(names_in, inputs[graph], strict=True)})
        with torch.inference_mode():
            want = modules[graph](*inputs[graph])
        want = want if isinstance(want, tuple) else (want,)
        diffs[graph] = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want, strict=True))
    return diffs


def write_export(model: nn.Module, out: str | Path, meta: dict[str, Any], *, opset: int = OPSET,
                 replace: bool = True) -> dict[str, Any]:
    """Export ``model`` (float32) into the folder ``out`` in one step (``atomic_folder``), checked with
    ``check_graphs``; ``meta`` goes into the sidecar, which is returned. ``replace=False``: an export
    already complete at ``out`` (another process's) is kept."""
    from siamtrack import __version__
    from siamtrack.backends.engine import count_track_flops

    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise onnx_missing() from None
    with atomic_folder(out, SIDECAR, replace=replace) as tmp:
        graphs = export_graphs(model, tmp, opset=opset)
        sidecar = {"format": FORMAT, "siamtrack": __version__, "torch": torch.__version__, "opset": opset,
                   "precision": "fp32", **meta, "arch": model.arch, "layout": layout_name(model), "graphs": graphs,
                   "box_only": not spec_of(model).masks,
                   "flops_per_step": count_track_flops(model.eval(), torch.device("cpu"), masks=spec_of(model).masks),
                   "max_abs_diff_vs_torch": check_graphs(tmp, model)}
        (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=1) + "\n")
    return sidecar


def read_sidecar(folder: str | Path) -> dict[str, Any]:
    """The sidecar of an export folder; a one-line error if the folder is not one."""
    path = Path(folder) / SIDECAR
    try:
        sidecar = json.loads(path.read_text())
    except (OSError, ValueError):
        raise SiamtrackError(f"{folder} is not a siamtrack ONNX export (no readable {SIDECAR})") from None
    if sidecar.get("layout") not in LAYOUTS:
        raise SiamtrackError(f"{folder}: an export of an older siamtrack (format {sidecar.get('format')}, this one "
                             f"reads {FORMAT}); export it again with siamtrack export onnx")
    files = {g: info.get("file", "") for g, info in sidecar.get("graphs", {}).items()}
    missing = [g for g in layout_of(sidecar).graphs if not (Path(folder) / files.get(g, "")).is_file()]
    if missing:
        raise SiamtrackError(f"{folder}: the export lacks {', '.join(missing)}.onnx")
    return sidecar
