"""ONNX export, the onnxruntime backend and its int8 graphs.

The shipped siammask-lite is the model that tracks; the official architecture is exported from
the suite's seeded checkpoint (its golden parity is in test_golden.py). Exports go to the
session's temporary cache (conftest ``onnx_cache``) or to ``tmp_path``, never into the repository.
"""

from __future__ import annotations

import json
import sys

import click
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from siamtrack import __version__
from siamtrack.api import build_tracker, load_network
from siamtrack.backends.onnx_export import SIDECAR, read_sidecar, window_at, write_export
from siamtrack.cli import cli
from siamtrack.commands.bench import bench_combinations
from siamtrack.errors import SiamtrackError
from siamtrack.io import synthetic
from siamtrack.models.siammask import SearchFeatures, refine_inputs
from siamtrack.weights.loading import load_checkpoint
from tests.conftest import SHARED, need, sequence_j

TRAIN_VIDEOS = SHARED / "train_data" / "videos"


@pytest.fixture(scope="module")
def lite():
    return load_network()  # the shipped siammask-lite: (module, name, preset)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


@pytest.mark.parametrize("pads,channels", [((16, 8, 4), (64, 256, 512)), ((18, 9, 4), (16, 24, 40))])
def test_graph_windows_are_the_tracker_refine_windows(pads, channels):
    """The refine graph cuts its windows with gathers on the cell; they equal ``refine_inputs``' slices,
    at the corners and inside the response map, for both architectures' map sizes and offsets."""
    g = torch.Generator().manual_seed(0)
    size0, size1 = (125, 63) if pads[0] == 16 else (124, 62)
    feats = SearchFeatures(torch.rand(1, channels[0], size0, size0, generator=g),
                           torch.rand(1, channels[1], size1, size1, generator=g),
                           torch.rand(1, channels[2], 31, 31, generator=g), torch.rand(1, 8, 25, 25, generator=g))
    for row, col in ((0, 0), (24, 24), (12, 3), (0, 24)):
        r, c = torch.tensor([row]), torch.tensor([col])
        want = refine_inputs(feats, r, c, pads=pads)
        got = [window_at(f, pad, scale, size, r, c)
               for f, pad, scale, size in zip(feats[:3], pads, (4, 2, 1), (61, 31, 15), strict=True)]
        for a, b in zip(got, want[:3], strict=True):
            assert torch.equal(a, b), (row, col)


def _run(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def check_against_torch(folder, model) -> None:
    """Run the exported graphs on one template and search crop; compare with the torch network's own
    template, track and refine (its ``refine_inputs`` path) at a cell off the centre."""
    g = torch.Generator().manual_seed(7)
    z, x = torch.rand(1, 3, 127, 127, generator=g) * 255, torch.rand(1, 3, 255, 255, generator=g) * 255
    with torch.inference_mode():
        kernels = model.template(z)
        cls, loc, feats = model.track(x, kernels)
        mask = model.refine(feats, torch.tensor([20]), torch.tensor([3]))
    k = _run(folder / "template.onnx", {"z": z.numpy()})
    for got, want in zip(k, kernels, strict=True):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)
    names = ("cls_kernel", "loc_kernel", "mask_kernel")
    out = _run(folder / "search.onnx", {"x": x.numpy(), **dict(zip(names, k, strict=True))})
    for got, want in zip(out, (cls, loc, *feats), strict=True):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-3)
    (logits,) = _run(folder / "refine.onnx", {**dict(zip(("p0", "p1", "p2", "corr"), out[2:], strict=True)),
                                              "row": np.array([20]), "col": np.array([3])})
    np.testing.assert_allclose(logits, mask.numpy(), rtol=1e-4, atol=1e-3)


def test_export_command_writes_checked_graphs_and_sidecar(tmp_path, lite):
    model, _, _ = lite
    out = tmp_path / "lite-onnx"
    result = CliRunner().invoke(cli, ["export", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(str(out))
    for graph in ("template", "search", "refine"):
        onnx.checker.check_model(str(out / f"{graph}.onnx"), full_check=True)
    sidecar = json.loads((out / SIDECAR).read_text())
    assert sidecar["arch"] == "siammask_lite" and sidecar["model"] == "siammask-lite"
    assert sidecar["siamtrack"] == __version__ and sidecar["precision"] == "fp32" and sidecar["opset"] >= 17
    assert sidecar["preset"]["name"] == "siammask-lite-tuned" and sidecar["preset"]["seg_thr"] == 0.55
    graphs = sidecar["graphs"]
    assert graphs["template"]["inputs"]["z"]["shape"] == ["N", 3, 127, 127]
    assert "BGR" in graphs["template"]["inputs"]["z"]["layout"]
    assert graphs["template"]["outputs"]["cls_kernel"]["shape"] == ["N", 128, 5, 5]
    assert graphs["search"]["inputs"]["x"]["shape"] == [1, 3, 255, 255]
    assert graphs["search"]["outputs"]["cls"]["shape"] == [1, 10, 25, 25]
    assert graphs["search"]["outputs"]["loc"]["shape"] == [1, 20, 25, 25]
    assert graphs["refine"]["inputs"]["row"] == {"shape": [1], "dtype": "int64", "layout": "cell index"}
    assert graphs["refine"]["outputs"]["mask"]["shape"] == [1, 127, 127]
    assert sidecar["flops_per_step"] == build_tracker(model, device="cpu", precision="fp32").flops_per_frame()
    assert max(sidecar["max_abs_diff_vs_torch"].values()) < 1e-3
    check_against_torch(out, model)
    assert sorted(p.name for p in out.iterdir()) == ["refine.onnx", "search.onnx", SIDECAR, "template.onnx"]


def test_export_errors_are_one_line(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["export", "onnx", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "--overwrite" in result.output and result.output.count("\n") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    result = CliRunner().invoke(cli, ["export", "onnx", "--out", str(tmp_path / "x"), "--calibration", str(tmp_path)])
    assert result.exit_code == 2 and "--precision int8" in result.output


@pytest.mark.slow
def test_export_official_architecture(tmp_path, synthetic_checkpoint):
    model = load_checkpoint(synthetic_checkpoint).model
    sidecar = write_export(model, tmp_path / "official", {"model": "synthetic"})
    assert sidecar["arch"] == "siammask_sharp"
    graphs = sidecar["graphs"]
    assert graphs["template"]["outputs"]["mask_kernel"]["shape"] == ["N", 256, 5, 5]
    assert graphs["search"]["outputs"]["p0"]["shape"] == [1, 64, 125, 125]
    assert graphs["search"]["outputs"]["corr"]["shape"] == [1, 256, 25, 25]
    for graph in ("template", "search", "refine"):
        onnx.checker.check_model(str(tmp_path / "official" / f"{graph}.onnx"), full_check=True)
        # the seeded BatchNorms fold to equal (zero) biases, which the exporter shares through Identity
        # nodes; each convolution must get its own constant, or int8 leaves it in float
        nodes = onnx.load(str(tmp_path / "official" / f"{graph}.onnx")).graph.node
        assert not any(n.op_type == "Identity" for n in nodes)
    check_against_torch(tmp_path / "official", model)


def test_onnxruntime_fp32_tracks_as_torch_does(lite, capsys):
    """fp32 parity on a generated clip with two objects (one template run for both, one search run
    each), through a lost search of one of them (several crops, refine at the chosen crop)."""
    model, name, preset = lite
    clip = list(synthetic.frames(24, (480, 360)))
    x, y, w, h = clip[0].box
    boxes = [clip[0].box, (x + w / 4, y + h / 4, w / 2, h / 2)]  # the object, and its centre
    ref = build_tracker(model, preset, device="cpu", precision="fp32", model_name=name)
    ort_tracker = build_tracker(model, preset, precision="fp32", model_name=name, backend="onnxruntime", threads=1)
    assert ort_tracker.backend == "onnxruntime" and ort_tracker.precision == "fp32" and ort_tracker.threads == 1
    assert ort_tracker.net.sessions["search"].get_session_options().intra_op_num_threads == 1
    for t in (ref, ort_tracker):
        t.init(clip[0].image, boxes)
    overlaps, states = [], []
    for i, frame in enumerate(clip[1:], start=1):
        if i == 12:
            ref.mark_lost(0)
            ort_tracker.mark_lost(0)
        for a, b in zip(ref.track(frame.image), ort_tracker.track(frame.image), strict=True):
            assert a.state == b.state, f"frame {i}"
            assert b.score == pytest.approx(a.score, abs=1e-3)
            if a.box is not None:
                np.testing.assert_allclose(b.box, a.box, atol=0.5)
            overlaps.append(iou(a.mask, b.mask))
            states.append((a.obj_id, a.state))
    assert np.mean(overlaps) >= 0.99 and min(overlaps) >= 0.95
    assert (0, "lost") in states[22:24] and states[-2] == (0, "tracked")  # searched for, then found again
    # the export was made once (with a note), and the next tracker finds it in the cache
    assert capsys.readouterr().err.count("exporting siammask-lite to ONNX") <= 1
    again = build_tracker(model, preset, precision="fp32", backend="onnxruntime")
    assert again.net.folder == ort_tracker.net.folder and "exporting" not in capsys.readouterr().err


def test_backend_and_precision_errors(lite, monkeypatch):
    model, _, _ = lite
    with pytest.raises(SiamtrackError, match="int8 runs on the onnxruntime backend"):
        build_tracker(model, device="cpu", precision="int8")
    with pytest.raises(SiamtrackError, match="runs fp32 or int8"):
        build_tracker(model, precision="bf16", backend="onnxruntime")
    with pytest.raises(SiamtrackError, match="unknown backend"):
        build_tracker(model, backend="tensorrt")
    with pytest.raises(SiamtrackError, match="on the CPU"):
        build_tracker(model, device="cuda", backend="onnxruntime")
    runner = CliRunner()
    for args, message in ((["--precision", "int8"], "int8 needs --backend onnxruntime"),
                          (["--backend", "onnxruntime", "--precision", "bf16"], "runs auto, fp32, int8"),
                          (["--backend", "onnxruntime", "--device", "cuda"], "runs on the CPU")):
        result = runner.invoke(cli, ["export-masks", "missing.mp4", "--bbox", "1,1,5,5", "--out", "o", *args])
        assert result.exit_code != 0 and message in result.output, result.output
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed
    with pytest.raises(SiamtrackError, match=r"pip install 'siamtrack\[onnx\]'"):
        build_tracker(model, backend="onnxruntime")


def test_a_failed_export_leaves_nothing_in_the_cache(lite, onnx_cache, monkeypatch):
    """Export is atomic: a failure part-way (a graph half written) leaves neither the export nor its
    temporary folder, so the next run exports again instead of loading a broken file."""
    import siamtrack.backends.onnx_export as onnx_export
    from siamtrack.backends.onnx_runtime import model_digest

    def half_written(model, out, **kwargs):
        (out / "template.onnx").write_bytes(b"partial")
        raise RuntimeError("interrupted")

    torch.manual_seed(3)
    model = type(lite[0])()  # other weights: not in the cache
    monkeypatch.setattr(onnx_export, "export_graphs", half_written)
    with pytest.raises(RuntimeError, match="interrupted"):
        build_tracker(model, backend="onnxruntime")
    assert list((onnx_cache / model_digest(model)).iterdir()) == []


def test_bench_combinations_keep_what_each_backend_runs():
    assert bench_combinations(["torch", "onnxruntime"], ["fp32-reference", "int8", "fp32"], "cpu") == [
        ("torch", "fp32-reference"), ("torch", "fp32"), ("onnxruntime", "int8"), ("onnxruntime", "fp32")]
    with pytest.raises(click.BadParameter, match="int8 needs --backend onnxruntime"):
        bench_combinations(["torch"], ["fp32", "int8"], "cpu")
    with pytest.raises(click.BadParameter, match="onnxruntime backend runs none of bf16"):
        bench_combinations(["torch", "onnxruntime"], ["bf16"], "cpu")
    with pytest.raises(click.BadParameter, match="CPU"):
        bench_combinations(["onnxruntime"], ["fp32"], "cuda")


def test_int8_needs_calibration_videos(tmp_path, monkeypatch):
    from siamtrack.backends.onnx_quant import CALIBRATION_ENV, calibration_root

    monkeypatch.setenv(CALIBRATION_ENV, str(tmp_path / "none"))
    with pytest.raises(SiamtrackError, match="--calibration DIR"):
        calibration_root()
    assert calibration_root(tmp_path) == tmp_path


# J over the first 30 frames, measured at commit: torch fp32 0.736 / 0.727, onnxruntime int8 0.750 / 0.741.
INT8_FLOORS = {"hike": 0.66, "blackswan": 0.65}


@pytest.mark.slow
@pytest.mark.parametrize("name,root", [("hike", TRAIN_VIDEOS), ("blackswan", SHARED / "data" / "davis")])
def test_int8_accuracy_floor(lite, name, root):
    """int8 (calibrated on the training videos) keeps the accuracy of fp32: above the shipped model's
    floors and within 0.03 J of torch fp32 on a held-back training sequence and a dev sequence."""
    need(TRAIN_VIDEOS)
    need(root)
    model, model_name, preset = lite
    int8 = build_tracker(model, preset, precision="int8", model_name=model_name, backend="onnxruntime")
    assert int8.precision == "int8"
    sidecar = int8.net.sidecar
    assert sidecar["precision"] == "int8" and sidecar["calibration"]["source"] == str(TRAIN_VIDEOS)
    assert sidecar["calibration"]["videos"] >= 20 and sidecar["quantized"] == ["template", "search"]
    search = onnx.load(str(int8.net.folder / "search.onnx"))
    assert sum(n.op_type == "QuantizeLinear" for n in search.graph.node) > 20
    j_int8 = sequence_j(int8, root, name)
    j_fp32 = sequence_j(build_tracker(model, preset, device="cpu", precision="fp32"), root, name)
    assert j_int8 >= INT8_FLOORS[name], f"{name}: int8 J {j_int8:.3f} below the floor {INT8_FLOORS[name]}"
    assert j_int8 >= j_fp32 - 0.03, f"{name}: int8 J {j_int8:.3f} vs fp32 {j_fp32:.3f}"


@pytest.mark.slow
def test_bench_times_every_backend_and_precision_interleaved(tmp_path):
    precisions = "fp32,int8" if TRAIN_VIDEOS.is_dir() else "fp32"
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(cli, ["bench", "--backend", "torch,onnxruntime", "--precision", precisions,
                                      "--threads", "1", "--frames", "2", "--warmup", "1", "--size", "320x240",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    cases = [(r["backend"], r["precision"]) for r in report["results"]]
    expected = [("torch", "fp32"), ("onnxruntime", "fp32")] + [("onnxruntime", "int8")] * ("int8" in precisions)
    assert cases == [*expected, ("torch", "fp32-reference")]  # the --vs reference, added
    for r in report["results"][:-1]:
        assert r["threads"] == 1 and r["fps"] > 0 and r["timed_frames"] == 2
        assert r["flops_per_frame"] == report["results"][0]["flops_per_frame"]
        assert r["vs_reference"] == pytest.approx(r["fps"] / report["results"][-1]["fps"])
        assert set(r["stages"]) == {"crop", "backbone", "heads", "refine", "post", "total"}
    assert report["onnxruntime"] == ort.__version__
    assert "ort fp32" in result.output and "search.onnx" in result.output
    if "int8" in precisions:
        assert "torch int8 left out" in result.output


def test_an_export_of_an_older_format_is_refused_in_one_line(tmp_path):
    (tmp_path / SIDECAR).write_text(json.dumps({"format": 3, "box_only": False, "graphs": {}}))
    with pytest.raises(SiamtrackError, match="older siamtrack .format 3.*export it again") as err:
        read_sidecar(tmp_path)
    assert "\n" not in str(err.value)
