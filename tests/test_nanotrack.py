"""NanoTrack v3/v2 in siamtrack: the networks against the published ONNX graphs, loading (the numpy
scalar allow-list and the refusal of anything else), the point decoder on hand-made maps, box-only
tracking, and agreement with ``cv2.TrackerNano``. What needs ``../shared/pretrained`` skips without it."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from siamtrack import geometry as geo
from siamtrack.api import build_tracker
from siamtrack.decoders import AnchorDecoder, PointDecoder, decoder_for, ltrb_to_boxes, point_grid
from siamtrack.errors import CheckpointError, SiamtrackError
from siamtrack.models import NetworkSpec, build_model, nanotrack, spec_of
from siamtrack.presets import PRESETS
from siamtrack.tracker import Tracker
from siamtrack.weights.loading import load_checkpoint, read_checkpoint
from tests.conftest import SHARED, need

PRETRAINED = SHARED / "pretrained" / "nanotrack"
ONNX = {nanotrack.V3: ("onnx-v3/nanotrack_backbone.onnx", "onnx-v3/nanotrack_head.onnx"),
        nanotrack.V2: ("onnx-v2/nanotrack_backbone_sim.onnx", "onnx-v2/nanotrack_head_sim.onnx")}
PTH = {nanotrack.V3: "nanotrackv3.pth", nanotrack.V2: "nanotrackv2.pth"}


def _checkpoint_keys(model: nanotrack.NanoTrack, seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded state dict under NanoTrack's own key names (``backbone.``, plus the unused ``neck.``)."""
    g = torch.Generator().manual_seed(seed)
    state = {k.replace("trunk.", "backbone.", 1): (torch.rand(v.shape, generator=g) * 0.2 + 0.9 if v.is_floating_point()
                                                   else v) for k, v in model.state_dict().items()}
    width = model.trunk.out_channels
    state["neck.downsample.0.weight"] = torch.zeros(width, width, 1, 1)
    return state


# ---------------------------------------------------------------------------------------------- networks

def _close(got: np.ndarray, want: np.ndarray) -> float:
    """Largest difference relative to the reference's range (the ONNX graphs carry their weights
    re-rounded, folded into the convolutions, so the backbone's differs from the exact float64 forward
    by up to 7e-5 of the range; siamtrack's float32 forward by about 1e-6)."""
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("version", [nanotrack.V3, nanotrack.V2])
def test_backbone_and_head_equal_the_published_onnx_graphs_on_real_crops(version):
    ort = pytest.importorskip("onnxruntime")
    frame = cv2.imread(str(need(SHARED / "train_data" / "videos" / "bear" / "JPEGImages" / "00000.jpg")))
    model = load_checkpoint(need(PRETRAINED / PTH[version])).model
    backbone, head = (ort.InferenceSession(str(need(PRETRAINED / f)), providers=["CPUExecutionProvider"])
                      for f in ONNX[version])
    center, size = np.array([430.0, 250.0]), np.array([180.0, 140.0])
    avg = frame.mean(axis=(0, 1))
    z = geo.context_crop(frame, center, geo.exemplar_side(size), geo.EXEMPLAR_SIZE, avg)
    x = geo.context_crop(frame, center + 20, geo.search_side(size), geo.INSTANCE_SIZE, avg)
    z, x = (torch.from_numpy(c).permute(2, 0, 1)[None].float() for c in (z, x))
    (oxf,) = backbone.run(None, {"input": x.numpy()})
    with torch.no_grad():
        zf, xf = model.template_features(z), model.backbone(x)
        cls, loc, _ = model.heads(torch.from_numpy(oxf), model.kernels(zf))  # the head on the same inputs
    ocls, oloc = head.run(None, {"input1": zf.numpy(), "input2": oxf})
    side = model.score_size
    assert zf.shape[2:] == (8, 8) and cls.shape[2:] == loc.shape[2:] == (side, side)
    assert _close(xf.numpy(), oxf) < 1e-4
    assert _close(cls.numpy(), ocls) < 1e-4 and _close(loc.numpy(), oloc) < 1e-4
    assert loc.min() > 0  # distances to the edges (after exp)


@pytest.mark.parametrize("version,channels,side", [(nanotrack.V3, 96, 15), (nanotrack.V2, 48, 16)])
def test_shapes_and_batched_objects_match_one_at_a_time(version, channels, side):
    torch.manual_seed(0)
    model = build_model(version).eval()
    z, x = torch.rand(2, 3, 127, 127) * 255, torch.rand(2, 3, 255, 255) * 255
    with torch.no_grad():
        kernels = model.template(z)
        cls, loc, search = model.track(x, kernels)
        one = model.track(x[1:], type(kernels)(*(k[1:] for k in kernels)))
    assert model.backbone(x).shape == (2, channels, 16, 16)
    assert cls.shape == (2, 2, side, side) and loc.shape == (2, 4, side, side)
    assert search.corr.shape[0] == 2 and search.corr.shape[2:] == (side, side)
    torch.testing.assert_close(cls[1:], one[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(loc[1:], one[1], atol=1e-3, rtol=1e-4)


# ----------------------------------------------------------------------------------------------- loading

def test_a_checkpoint_with_a_numpy_scalar_loads_and_its_version_is_recognised(tmp_path):
    for version in (nanotrack.V3, nanotrack.V2):
        model = build_model(version)
        path = tmp_path / f"{version}.pth"
        torch.save({"epoch": 3, "state_dict": _checkpoint_keys(model), "best": np.float64(0.5)}, path)
        loaded = load_checkpoint(path)
        assert loaded.arch == version and loaded.meta["best"] == 0.5
        got = loaded.model.state_dict()
        assert torch.equal(got["trunk.features.0.0.weight"], _checkpoint_keys(model)["backbone.features.0.0.weight"])
        assert not any(k.startswith("neck.") for k in got)


def test_any_other_global_is_refused_in_one_line(tmp_path):
    import datetime

    path = tmp_path / "other.pth"
    torch.save({"state_dict": _checkpoint_keys(build_model(nanotrack.V2)), "when": datetime.date(2024, 1, 1)}, path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert str(exc.value) == (f"{path}: refused to load: it would import datetime.date "
                              "(a checkpoint may hold only tensors and plain containers)")
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("version,tensors", [(nanotrack.V3, 438), (nanotrack.V2, 298)])
def test_the_published_checkpoints_load_strictly_without_the_unused_neck(version, tensors):
    path = need(PRETRAINED / PTH[version])
    raw = read_checkpoint(path)["state_dict"]
    loaded = load_checkpoint(path)
    assert loaded.arch == version and loaded.meta["epoch"] > 0 and len(raw) == tensors
    renamed = {"trunk." + k.removeprefix("backbone.") if k.startswith("backbone.") else k for k in raw}
    assert renamed - set(loaded.model.state_dict()) == {k for k in raw if k.startswith("neck.")}
    assert set(loaded.model.state_dict()) <= renamed


# --------------------------------------------------------------------------------------------- decoding

def test_point_grid_centres_the_map_on_the_crop_centre():
    grid = point_grid(15, 16)
    assert grid.shape == (225, 2)
    np.testing.assert_array_equal(grid[0], [-112, -112])
    np.testing.assert_array_equal(grid[7 * 15 + 7], [0, 0])
    np.testing.assert_array_equal(grid[14], [112, -112])  # row-major: x varies fastest
    even = point_grid(16, 16)
    np.testing.assert_array_equal(even[0], [-128, -128])
    np.testing.assert_array_equal(even[-1], [112, 112])


def test_ltrb_distances_decode_to_centre_and_size():
    points = np.array([[0.0, 0.0], [16.0, -32.0]], dtype=np.float32)
    delta = np.array([[10.0, 4.0], [20.0, 8.0], [30.0, 4.0], [40.0, 8.0]], dtype=np.float32)
    np.testing.assert_allclose(ltrb_to_boxes(delta, points), [[10, 16], [10, -32], [40, 8], [60, 16]])


def _maps(side: int, peak: tuple[int, int], box_wh: tuple[float, float], score_at_peak: float = 0.9):
    """A score map with one peak and l/t/r/b maps that give every cell a box of ``box_wh`` centred on it."""
    score = np.full(side * side, 0.05)
    score[peak[0] * side + peak[1]] = score_at_peak
    w, h = box_wh
    delta = np.tile(np.array([[w / 2], [h / 2], [w / 2], [h / 2]]), side * side)
    return score, delta


def test_the_point_decoder_moves_to_the_peak_and_updates_the_size_by_the_rate():
    dec = PointDecoder.of_size(15, 16)
    preset = PRESETS["nanotrack-v3"]
    center, size = np.array([300.0, 200.0]), np.array([60.0, 40.0])
    scale = geo.EXEMPLAR_SIZE / geo.context_size(size)
    target = size * scale  # the target's size in crop pixels
    score, delta = _maps(15, (8, 9), tuple(target))
    best, row, col, new_center, new_size, best_score, (pscore, _, penalty), cell = dec.select(
        center, size, score, delta, preset)
    assert (row, col, best) == (8, 9, 8 * 15 + 9) and best_score == 0.9
    assert cell == (8, 9)  # every box is centred on its point: the mask is refined there
    np.testing.assert_allclose(penalty, 1.0)  # every box has the target's size and ratio
    np.testing.assert_allclose(new_center, center + np.array([2 * 16, 16]) / scale)
    np.testing.assert_allclose(new_size, size)  # same size predicted: unchanged whatever the rate
    wi = preset.window_influence
    assert pscore[best] == pytest.approx(0.9 * (1 - wi) + dec.window[best] * wi)

    score, delta = _maps(15, (7, 7), (target[0] * 1.2, target[1] * 1.2), 1.0)
    *_, new_size, _, (_, _, penalty), _ = dec.select(center, size, score, delta, preset)
    lr = penalty[7 * 15 + 7] * 1.0 * preset.lr
    assert penalty[0] < 1.0
    np.testing.assert_allclose(new_size, size * (1 - lr) + size * 1.2 * lr)


def test_the_mask_is_refined_at_the_point_nearest_the_chosen_boxs_centre():
    """A best point near the object's left edge (its box reaches 8 px left and 72 px right, 5 px up
    and 37 px down): the mask point is the one nearest that box's centre (two cells right, one down);
    the pick stays."""
    dec = PointDecoder.of_size(15, 16, masks=True)
    center, size = np.array([300.0, 200.0]), np.array([60.0, 40.0])
    score, delta = _maps(15, (7, 5), (20.0, 20.0))
    delta[:, 7 * 15 + 5] = [8.0, 5.0, 72.0, 37.0]  # box centre 32 px right of the point, 16 px down
    best, row, col, *_, cell = dec.select(center, size, score, delta, PRESETS["siammask-nano"])
    assert (row, col) == (7, 5) and cell == (8, 7)
    assert dec.mask_cell(7, 5, np.array([np.nan, 0.0, 1.0, 1.0])) == (7, 5)  # no centre: the point itself
    assert dec.mask_cell(0, 0, np.array([-500.0, 900.0, 1.0, 1.0])) == (14, 0)  # beyond the grid: its edge
    anchors = AnchorDecoder.for_spec(NetworkSpec("siammask_sharp"))
    assert anchors.mask_cell(3, 4, np.array([100.0, 100.0, 1.0, 1.0])) == (3, 4)  # SiamMask: the chosen cell


def test_the_window_and_the_change_penalty_break_ties():
    dec = PointDecoder.of_size(16, 16)
    preset = PRESETS["nanotrack-v2"]
    center, size = np.array([100.0, 100.0]), np.array([50.0, 50.0])
    target = size * geo.EXEMPLAR_SIZE / geo.context_size(size)
    score, delta = _maps(16, (8, 8), tuple(target))
    score[2 * 16 + 2] = score[8 * 16 + 8]  # same score far from the centre: the window prefers the centre
    assert dec.select(center, size, score, delta, preset)[1:3] == (8, 8)
    score, delta = _maps(16, (8, 8), tuple(target))
    score[8 * 16 + 7] = score[8 * 16 + 8]
    delta[:, 8 * 16 + 8] *= np.array([2.0, 0.5, 2.0, 0.5])  # the central cell changes shape: penalised
    assert dec.select(center, size, score, delta, preset)[1:3] == (8, 7)


def test_opencv_style_flattens_the_window():
    dec = PointDecoder.of_size(16, 16)
    score, delta = _maps(16, (8, 8), (60.0, 60.0), 0.5)
    center, size = np.array([100.0, 100.0]), np.array([50.0, 50.0])
    pick = dec.select(center, size, score, delta, PRESETS["nanotrack-opencv"])
    win = np.sqrt(np.outer(np.hanning(16), np.hanning(16))).ravel()
    np.testing.assert_allclose(win, cv2.createHanningWindow((16, 16), cv2.CV_32F).ravel(), atol=1e-6)
    p = PRESETS["nanotrack-opencv"]
    np.testing.assert_allclose(pick[6][0], pick[6][2] * score * (1 - p.window_influence) + win * p.window_influence)


def test_the_model_chooses_its_decoder():
    assert isinstance(decoder_for(spec_of(build_model("siammask_lite", channels=16))), AnchorDecoder)
    dec = decoder_for(spec_of(build_model(nanotrack.V3)))
    assert isinstance(dec, PointDecoder) and dec.shape == (1, 15, 15) and not dec.masks
    assert decoder_for(spec_of(build_model(nanotrack.V2))).shape == (1, 16, 16)


# -------------------------------------------------------------------------------------------- tracking

def _clip(n: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (200, 260, 3), dtype=np.uint8)
    return [np.roll(base, 2 * t, axis=1) for t in range(n)]


def test_a_box_model_writes_the_filled_box_as_its_mask():
    torch.manual_seed(0)
    untrained = replace(PRESETS["nanotrack-v3"], lost_state=False)  # random weights score about 0.5
    tracker = build_tracker(build_model(nanotrack.V3), untrained, device="cpu", precision="fp32")
    assert tracker.mask_source == "box"
    frames = _clip()
    tracker.init(frames[0], (100, 60, 50, 40))
    for frame in frames[1:]:
        (r,) = tracker.track(frame)
        assert r.box is not None
        x, y, w, h = r.box
        np.testing.assert_array_equal(r.mask, geo.box_mask(frame.shape[:2], r.box))
        assert r.polygon_source == "box" and r.rotated.angle == 0.0
        np.testing.assert_allclose(r.rotated.points, geo.box_corners((x + w / 2, y + h / 2), (w, h)))
        assert set(np.unique(r.mask_prob)) <= {0.0, 1.0}


def test_fast_and_reference_paths_agree_for_a_box_model():
    torch.manual_seed(1)
    model = build_model(nanotrack.V2).eval()
    frames = _clip(4)
    out = []
    for p in ("fp32-reference", "fp32"):
        t = build_tracker(model, "nanotrack-v2", device="cpu", precision=p)
        t.init(frames[0], (100, 60, 50, 40))
        out.append([t.track(f)[0].box for f in frames[1:]])
    np.testing.assert_allclose(np.array(out[0], dtype=float), np.array(out[1], dtype=float), atol=1e-3)


def test_a_network_without_refine_needs_a_box_decoder():
    class NoRefine(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = build_model("siammask_lite", channels=16)

        def __getattr__(self, name):
            if name in ("template_features", "kernels", "template", "backbone", "heads", "track"):
                return getattr(self._modules["inner"], name)
            return super().__getattr__(name)

    with pytest.raises(SiamtrackError, match="it lacks refine"):
        build_tracker(NoRefine(), device="cpu", precision="fp32")


def _iou(a, b) -> float:
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - iw * ih
    return iw * ih / union if union > 0 else 0.0


@pytest.mark.slow
def test_v2_weights_with_the_opencv_preset_give_cv2_tracker_nanos_boxes():
    """OpenCV feeds the network RGB (``swapRB``): ``color="rgb"`` on a BGR frame does the same."""
    frames_dir = need(SHARED / "data" / "davis" / "JPEGImages" / "480p" / "car-shadow")
    mask = cv2.imread(str(SHARED / "data" / "davis" / "Annotations" / "480p" / "car-shadow" / "00000.png"), 0) > 0
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    frames = [cv2.imread(str(p)) for p in sorted(frames_dir.glob("*.jpg"))[:25]]
    params = cv2.TrackerNano_Params()
    params.backbone, params.neckhead = (str(need(PRETRAINED / f)) for f in ONNX[nanotrack.V2])
    reference = cv2.TrackerNano_create(params)
    reference.init(frames[0], box)
    ours = build_tracker(load_checkpoint(need(PRETRAINED / PTH[nanotrack.V2])).model, "nanotrack-opencv", device="cpu",
                         precision="fp32")
    ours.init(frames[0], box, color="rgb")
    ious = []
    for frame in frames[1:]:
        _, want = reference.update(frame)
        (r,) = ours.track(frame, color="rgb")
        x, y, w, h = r.box
        ious.append(_iou(want, (int(x), int(y), int(w), int(h))))  # OpenCV truncates its Rect
    assert np.mean(ious) >= 0.99 and min(ious) >= 0.9


@pytest.mark.slow
def test_the_lost_state_works_on_a_box_models_scores():
    """A generated exit clip (a training seed): hidden frames are lost, with no box and an empty mask,
    and the object is found again when it comes back."""
    from siamtrack.io.synthetic import scenario
    from siamtrack.lost import LOST, TRACKED

    tracker = build_tracker(load_checkpoint(need(PRETRAINED / PTH[nanotrack.V3])).model, "nanotrack-v3", device="cpu",
                            precision="fp32")
    frames = list(scenario("exit", seed=101))
    tracker.init(frames[0].image, frames[0].box)
    states = [tracker.track(f.image)[0] for f in frames[1:]]
    hidden = [t for t, f in enumerate(frames[1:]) if f.visible == 0]
    assert all(states[t].state == LOST and states[t].box is None and states[t].mask_area == 0
               for t in hidden[2:])
    assert all(r.state == TRACKED for r in states[:hidden[0] - 3])
    assert states[-1].state == TRACKED
    assert _iou(states[-1].box, frames[-1].box) > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("version", [nanotrack.V3, nanotrack.V2])
def test_onnxruntime_runs_a_box_model_as_torch_does(version):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    torch.manual_seed(2)
    model = build_model(version).eval()
    preset = replace(PRESETS["nanotrack-v3" if version == nanotrack.V3 else "nanotrack-v2"], lost_state=False)
    frames = _clip(4)
    boxes, trackers = [], []
    for backend in ("torch", "onnxruntime"):
        t = build_tracker(model, preset, device="cpu", precision="fp32", backend=backend, model_name="nano-test")
        t.init(frames[0], (100, 60, 50, 40))
        boxes.append([t.track(f)[0].box for f in frames[1:]])
        trackers.append(t)
    np.testing.assert_allclose(np.array(boxes[0]), np.array(boxes[1]), atol=1e-2)
    sidecar = trackers[1].net.sidecar
    assert sidecar["box_only"] and max(sidecar["max_abs_diff_vs_torch"].values()) < 1e-3
    # v3's depth-wise correlation pads inside its convolution (the export form), not in a Pad node
    search = onnx.load(str(trackers[1].net.folder / "search.onnx"))
    assert not any(n.op_type == "Pad" for n in search.graph.node)


def _track_boxes(tracker: Tracker, frames: list[np.ndarray], box: tuple[float, ...]) -> list:
    tracker.init(frames[0], box)
    return [tracker.track(f)[0].box for f in frames[1:]]


@pytest.mark.slow
def test_int8_quantizes_a_box_models_head_on_training_crops_and_tracks_as_fp32(capsys):
    """int8 for NanoTrack: calibrated on the training videos, cached like the SiamMask graphs; the
    head's convolutions are int8, the trunk float; boxes stay on fp32's."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    videos = need(SHARED / "train_data" / "videos")
    model = load_checkpoint(need(PRETRAINED / PTH[nanotrack.V3])).model
    int8 = build_tracker(model, "nanotrack-v3", precision="int8", backend="onnxruntime", model_name="nanotrack-v3",
                         threads=1)
    assert int8.precision == "int8" and "quantizing nanotrack-v3 to int8" in capsys.readouterr().err
    sidecar = int8.net.sidecar
    assert sidecar["precision"] == "int8" and sidecar["box_only"] and sidecar["quantized"] == ["search"]
    assert sidecar["calibration"]["source"] == str(videos) and sidecar["calibration"]["videos"] >= 20
    fp32_folder = int8.net.folder.parent / "fp32"
    assert (int8.net.folder / "template.onnx").read_bytes() == (fp32_folder / "template.onnx").read_bytes()
    graph = onnx.load(str(int8.net.folder / "search.onnx")).graph
    weights = {t.name for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    trunk = [n for n in convs if "/trunk/" in n.name]
    assert trunk and all(n.input[1] in weights for n in trunk)  # float weights
    int8_convs = [n for n in convs if n.input[1] in dequantized]
    assert len(int8_convs) > 20 and not any("/trunk/" in n.name for n in int8_convs)
    video = videos / "bear"
    frames = [cv2.imread(str(p)) for p in sorted((video / "JPEGImages").glob("*.jpg"))[:30]]
    ys, xs = np.nonzero(cv2.imread(str(video / "Annotations" / "00000.png"), 0))
    box = (float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1))
    fp32 = build_tracker(model, "nanotrack-v3", precision="fp32", backend="onnxruntime", model_name="nanotrack-v3",
                         threads=1)
    ious = [_iou(a, b) for a, b in zip(_track_boxes(int8, frames, box), _track_boxes(fp32, frames, box), strict=True)]
    assert np.mean(ious) >= 0.9 and min(ious) >= 0.7, ious
    again = build_tracker(model, "nanotrack-v3", precision="int8", backend="onnxruntime",
                          model_name="nanotrack-v3")
    assert again.net.folder == int8.net.folder and "quantizing" not in capsys.readouterr().err
