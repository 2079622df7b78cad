"""int8 graphs for ONNX Runtime: static quantization calibrated on crops of training videos.

Calibration crops are cut with the tracker's own crop function from training videos only (by
default the checkout's ``../shared/train_data/videos``; ``$SIAMTRACK_CALIBRATION`` or
``--calibration`` name another folder of DAVIS-layout videos), never from evaluation data: a
template crop at each video's first annotated frame and search crops on later frames, centred
where the object was one frame earlier, as tracking cuts them. Quantization is QDQ with per-channel
int8 weights and uint8 activations (VNNI dot products on CPUs that have them); the depth-wise
correlations, whose kernels are inputs rather than weights, stay float.

What is quantized is the export layout's (``onnx_export.LAYOUTS``). A NanoTrack-based network
(``features`` layouts) has its head quantized, in the search graph; its MobileNetV3 trunk (the
template graph and the search graph's first part) stays float: there the hard-swish and
squeeze-excite layers, which have no int8 kernels, break every int8 run into short ones, so an int8
trunk was slower than the float one and lost accuracy (docs/eval.md). Its correlations run in
int8: their template-side operands come from int8 layers of the same graph, and ONNX Runtime fuses
a float product between dequantized inputs and a quantized output into its int8 form. Refine
stays float in every layout.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from siamtrack import geometry as geo
from siamtrack.atomic import atomic_folder
from siamtrack.backends.onnx_export import SIDECAR, layout_of, read_sidecar
from siamtrack.errors import SiamtrackError

CALIBRATION_ENV = "SIAMTRACK_CALIBRATION"
# The checkout's training videos (a source checkout beside ../shared); absent in an installed package.
DEFAULT_CALIBRATION = Path(__file__).resolve().parents[3] / "shared" / "train_data" / "videos"
TRUNK_SCOPE = "/trunk/"  # the exporter names a box network's trunk nodes after its ``trunk`` module
# siammask-nano's trained copy of the trunk's first stages (``mask_trunk``) stays float with the trunk
TRUNK_SCOPES = (TRUNK_SCOPE, "/mask_trunk.")  # its stages: /mask_trunk.0/, /mask_trunk.1/, ...
SEARCH_CROPS_PER_VIDEO = 2


def calibration_root(given: str | Path | None = None) -> Path:
    """The folder of calibration videos: ``given``, else ``$SIAMTRACK_CALIBRATION``, else the default."""
    root = Path(given or os.environ.get(CALIBRATION_ENV) or DEFAULT_CALIBRATION).expanduser()
    if not root.is_dir():
        raise SiamtrackError(f"int8 needs calibration videos and {root} is not a folder: pass --calibration DIR "
                             f"or set {CALIBRATION_ENV} to a folder of training videos (<seq>/JPEGImages, "
                             "<seq>/Annotations)")
    return root


def _chw(crop: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(crop.transpose(2, 0, 1)[None], dtype=np.float32)


def calibration_crops(root: str | Path, per_video: int = SEARCH_CROPS_PER_VIDEO
                      ) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Per video of ``root``: its template crop and ``per_video`` search crops (float32 NCHW, raw BGR),
    cut as the tracker cuts them (``geometry.context_crop``)."""
    from siamtrack.train.datasets import FrameCache, davis_tracks

    tracks = davis_tracks(root)
    cache = FrameCache()
    out = []
    for track in tracks:
        valid = track.valid
        if len(valid) < 2:
            continue
        first = cache.frame(track.frames[valid[0]])
        avg = first.mean(axis=(0, 1))
        center, size = geo.xywh_to_center(track.boxes[valid[0]])
        z = geo.context_crop(first, center, geo.exemplar_side(size), geo.EXEMPLAR_SIZE, avg)
        searches = []
        picks = np.linspace(1, len(valid) - 1, per_video).round().astype(int)
        for i in picks:
            frame = cache.frame(track.frames[valid[i]])
            center, size = geo.xywh_to_center(track.boxes[valid[i - 1]])  # where the object was a frame before
            searches.append(_chw(geo.context_crop(frame, center, geo.search_side(size), geo.INSTANCE_SIZE, avg)))
        out.append((_chw(z), searches))
    if not out:
        raise SiamtrackError(f"{root}: no annotated videos to calibrate int8 with")
    return out


class _Feeds:
    """A ``CalibrationDataReader``: the given input dictionaries, one per call."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def calibration_feeds(fp32: Path, crops: list[tuple[np.ndarray, list[np.ndarray]]]) -> dict[str, list[dict]]:
    """The inputs each graph sees on the calibration crops, run through the float32 graphs: template
    crops; search crops with their video's template outputs (SiamMask's kernels, a NanoTrack-based
    network's ``zf``); for a layout with refine, the search outputs refine reads, at the
    highest-scoring cell."""
    import onnxruntime as ort

    io = layout_of(read_sidecar(fp32)).io
    sessions = {g: ort.InferenceSession(str(fp32 / f"{g}.onnx"), providers=["CPUExecutionProvider"])
                for g in ("template", "search")}
    refine = io["refine"][0][:-2] if "refine" in io else None
    feeds: dict[str, list[dict]] = {"template": [], "search": [], **({"refine": []} if refine else {})}
    for z, searches in crops:
        feeds["template"].append({"z": z})
        template = dict(zip(io["template"][1], sessions["template"].run(None, {"z": z}), strict=True))
        for x in searches:
            feeds["search"].append({"x": x, **template})
            if not refine:
                continue
            out = dict(zip(io["search"][1], sessions["search"].run(None, {"x": x, **template}), strict=True))
            score = out["cls"].reshape(2, -1, *out["cls"].shape[2:])
            best = np.unravel_index(int(np.argmax(score[1] - score[0])), score.shape[1:])
            feeds["refine"].append({**{n: out[n] for n in refine},
                                    "row": np.array([best[1]], np.int64), "col": np.array([best[2]], np.int64)})
    return feeds


def float_nodes(path: Path, float_trunk: bool = False) -> list[str]:
    """Nodes that stay float: convolutions whose weights are not constants (the correlations with
    the template's kernels) and, with ``float_trunk``, the trunk."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    constants = {t.name for t in model.graph.initializer}
    if float_trunk and not any(TRUNK_SCOPE in n.name for n in model.graph.node):
        raise ValueError(f"{path}: no node of the trunk ({TRUNK_SCOPE}) to keep in float")
    return [n.name for n in model.graph.node
            if (n.op_type == "Conv" and n.input[1] not in constants)
            or (float_trunk and any(scope in n.name for scope in TRUNK_SCOPES))]


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Silence ``quantize_static``'s advice on the root logger (run shape-inference pre-processing: on
    these graphs it changes neither the quantized outputs nor their speed, measured), without leaving
    a handler on the root logger behind."""
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    previous = root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)
        root.removeHandler(handler)


def write_int8(fp32: str | Path, out: str | Path, calibration: str | Path, *, replace: bool = True) -> dict[str, Any]:
    """Quantize the float32 export ``fp32`` into the folder ``out`` (in one step), calibrated on crops
    of the videos in ``calibration``; returns the new sidecar (``replace``: as in ``write_export``)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    fp32 = Path(fp32)
    sidecar = read_sidecar(fp32)
    crops = calibration_crops(calibration)
    feeds = calibration_feeds(fp32, crops)
    layout = layout_of(sidecar)
    quantized = [g for g in sidecar["graphs"] if g in layout.quantized]
    with atomic_folder(out, SIDECAR, replace=replace) as tmp, _quiet_root_logger():
        for graph in sidecar["graphs"]:
            src = fp32 / f"{graph}.onnx"
            if graph not in quantized:
                shutil.copyfile(src, tmp / f"{graph}.onnx")
                continue
            quantize_static(str(src), str(tmp / f"{graph}.onnx"), _Feeds(feeds[graph]),
                            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                            nodes_to_exclude=float_nodes(src, layout.float_trunk))
        sidecar = {**sidecar, "precision": "int8", "quantized": quantized, "note": layout.int8_note,
                   "calibration": {"source": str(calibration), "videos": len(crops),
                                   "template_crops": len(feeds["template"]), "search_crops": len(feeds["search"])}}
        sidecar.pop("max_abs_diff_vs_torch", None)
        (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=1) + "\n")
    return sidecar
