"""``siamtrack vot`` over TraX: a raw TraX session as the VOT toolkit opens one, and ``vot evaluate`` offline.

Both spawn the command as the toolkit does (stdin/stdout pipes, stderr merged into them,
``TRAX=1``, a scratch working folder) on a generated clip written as JPEGs, with the shipped
default model, and compare what comes back with the same tracker run in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from siamtrack import weights
from siamtrack.cli import cli
from siamtrack.eval import boxes as bx
from siamtrack.io.synthetic import frames

ROOT = Path(__file__).resolve().parents[1]
N_FRAMES, SIZE = 12, (320, 240)
MODEL = ["--device", "cpu", "--precision", "fp32"]
IOU_FLOOR = 0.5  # measured: rotated boxes 0.59-0.71 against the clip's axis-aligned boxes, axis-aligned 0.71 mean


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The clip as a VOT toolkit sequence (color/%08d.jpg, groundtruth.txt, sequence) and its boxes."""
    if not weights.local_path("siammask-lite").is_file():
        pytest.skip("the shipped weights/siammask-lite.pt is not present")
    seq = tmp_path_factory.mktemp("vot") / "sequences" / "clip"
    (seq / "color").mkdir(parents=True)
    boxes = []
    for i, f in enumerate(frames(N_FRAMES, SIZE)):
        cv2.imwrite(str(seq / "color" / f"{i + 1:08d}.jpg"), f.image)
        boxes.append(f.box)
    (seq / "groundtruth.txt").write_text("".join(",".join(f"{v:g}" for v in b) + "\n" for b in boxes))
    (seq / "sequence").write_text(f"channels.color=color/%08d.jpg\nwidth={SIZE[0]}\nheight={SIZE[1]}\n"
                                  f"length={N_FRAMES}\nfps=30\n")
    (seq.parent / "list.txt").write_text("clip\n")
    return seq, boxes


def in_process(seq: Path, init_box, backend: str = "torch", model: str = "siammask-lite") -> list:
    """The same model tracking the same JPEG frames in this process."""
    from siamtrack.api import from_pretrained

    tracker = from_pretrained(model, device="cpu", precision="fp32", backend=backend)
    paths = sorted((seq / "color").glob("*.jpg"))
    tracker.init(cv2.imread(str(paths[0])), [init_box])
    return [tracker.track(cv2.imread(str(p)))[0] for p in paths[1:]]


def tracker_env() -> dict[str, str]:
    return {**os.environ, "TRAX": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["siammask-lite", "siammask-nano"])
def test_trax_session_returns_the_trackers_rotated_boxes(clip, tmp_path, model):
    pytest.importorskip("trax", reason="vot-trax is in the dev extra")
    from trax.client import Client
    from trax.image import FileImage
    from trax.region import Polygon

    seq, boxes = clip
    paths = sorted((seq / "color").glob("*.jpg"))
    proc = subprocess.Popen([sys.executable, "-m", "siamtrack.cli", "vot", "--model", model, *MODEL], cwd=tmp_path,
                            env=tracker_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0)
    log: list[str] = []
    try:
        client = Client(stream=(proc.stdin.fileno(), proc.stdout.fileno()), timeout=120, log=log.append)
        assert client.tracker_name == "siamtrack"
        assert set(client.region_formats) == {"rectangle", "polygon"} and client.image_formats == ["path"]
        # A VOT polygon ground truth: the tracker starts from the official SiamMask box of it.
        corners = [tuple(map(float, p)) for p in bx.box_polygon(boxes[0])]
        (state, _), = client.initialize({"color": FileImage.create(str(paths[0]))}, [(Polygon.create(corners), {})],
                                        {})[0]
        np.testing.assert_allclose(list(state), corners)
        replies = []
        for path in paths[1:]:
            (region, properties), = client.frame({"color": FileImage.create(str(path))}, {}, [])[0]
            assert region.type == "polygon" and 0.0 <= float(properties["confidence"]) <= 1.0
            replies.append(np.array(list(region), np.float64))
        client.quit()
        assert proc.wait(timeout=60) == 0, "".join(log)
    finally:
        if proc.poll() is None:
            proc.kill()
    expected = in_process(seq, bx.vot_init_box(np.array(corners)), model=model)
    for reply, result, box in zip(replies, expected, boxes[1:], strict=True):
        np.testing.assert_allclose(reply, result.rotated.points, atol=1e-3)  # TraX sends 4 decimals
        assert bx.polygon_iou(reply, bx.box_polygon(box)) > IOU_FLOOR


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_vot_evaluate_runs_siamtrack_offline(clip, backend):
    """The toolkit's own `vot evaluate` and `vot analysis` on a local workspace (no download)."""
    pytest.importorskip("vot.tracker.trax", reason="vot-toolkit is in the dev extra")
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev extra")
    from vot.tracker.results import Results, Trajectory
    from vot.workspace.storage import LocalStorage

    seq, boxes = clip
    workspace = seq.parents[1]
    name = f"siamtrack-{backend}"  # its own results folder in the shared workspace
    command = " ".join([sys.executable, "-m", "siamtrack.cli", "vot", "--model", "siammask-lite", *MODEL,
                        "--backend", backend,
                        "--output", "rectangle"])
    (workspace / "trackers.ini").write_text(f"[{name}]\nlabel = {name}\nprotocol = trax\ncommand = {command}\n"
                                            f"timeout = 120\nenv_PYTHONPATH = {ROOT}\n")
    # The VOT-2018 baseline (supervised) experiment cannot run TraX trackers in vot-toolkit 0.9.0
    # (docs/eval.md); its unsupervised experiment runs the same session protocol.
    (workspace / "stack.yaml").write_text("title: siamtrack offline check\nexperiments:\n  baseline:\n"
                                          "    type: unsupervised\n    repetitions: 1\n    analyses:\n"
                                          "      - type: average_accuracy\n")
    (workspace / "config.yaml").write_text("registry:\n- ./trackers.ini\nstack: stack.yaml\n")
    vot = [sys.executable, "-m", "vot"]
    for args in (["evaluate", "--workspace", str(workspace), name],
                 ["analysis", "--workspace", str(workspace), "--name", name, name]):
        done = subprocess.run(vot + args, capture_output=True, text=True, timeout=600, cwd=workspace)
        assert done.returncode == 0 and "success" in done.stdout + done.stderr, done.stdout + done.stderr
    results = Results(LocalStorage(str(workspace / "results" / name / "baseline" / "clip")))
    regions = Trajectory.read(results, "clip_001").regions()
    expected = in_process(seq, boxes[0], backend)
    for region, result, box in zip(regions[1:], expected, boxes[1:], strict=True):
        got = (region.x, region.y, region.width, region.height)
        np.testing.assert_allclose(got, result.box, atol=1e-3)
        assert bx.polygon_iou(bx.box_polygon(got), bx.box_polygon(box)) > IOU_FLOOR
    analysis = json.loads((workspace / "analysis" / f"{name}.json").read_text())
    (((accuracy,),),) = analysis["results"]["baseline"]["results"]
    assert accuracy > IOU_FLOOR


def test_vot_refuses_to_run_outside_a_trax_session(monkeypatch):
    monkeypatch.delenv("TRAX", raising=False)
    monkeypatch.delenv("TRAX_SOCKET", raising=False)
    result = CliRunner().invoke(cli, ["vot", "--model", "siammask-lite"])
    assert result.exit_code == 1 and "vot evaluate" in result.output
    assert result.output.strip().count("\n") == 0


def test_init_box_from_trax_regions_and_replies():
    pytest.importorskip("trax", reason="vot-trax is in the dev extra")
    from trax.region import Polygon, Rectangle

    from siamtrack.commands.vot import init_box, reply_region

    assert init_box(Rectangle.create(10, 20, 30, 40)) == (10, 20, 30, 40)
    diamond = [(10.0, 0.0), (20.0, 10.0), (10.0, 20.0), (0.0, 10.0)]  # area 200 in a 20x20 box
    assert init_box(Polygon.create(diamond)) == pytest.approx(bx.vot_init_box(np.array(diamond)))
    pentagon = [(0.0, 0.0), (8.0, 0.0), (10.0, 5.0), (4.0, 9.0), (0.0, 5.0)]
    assert init_box(Polygon.create(pentagon)) == (0.0, 0.0, 10.0, 9.0)  # not a VOT quadrilateral: its extent

    result = SimpleNamespace(box=(1.5, 2.5, 10.0, 20.0),
                             rotated=SimpleNamespace(points=np.array([[0, 0], [4, 0], [4, 2], [0, 2]], np.float64)))
    assert list(reply_region(result, "polygon")) == [(0, 0), (4, 0), (4, 2), (0, 2)]
    assert reply_region(result, "rectangle").bounds() == (1.5, 2.5, 10.0, 20.0)


def test_vot_answers_every_frame_without_the_lost_state(monkeypatch):
    """VOT's short-term protocol needs a region on every frame (the toolkit judges failure itself)."""
    from siamtrack.commands import vot as vot_command
    from siamtrack.errors import SiamtrackError

    asked = {}

    def fake_make_tracker(*args):
        asked["lost"] = args[5]
        raise SiamtrackError("stop here")

    monkeypatch.setenv("TRAX", "1")
    monkeypatch.setattr(vot_command, "make_tracker", fake_make_tracker)
    result = CliRunner().invoke(cli, ["vot", "--model", "siammask-lite"])
    assert result.exit_code == 1 and "stop here" in result.output
    assert asked["lost"] == {"lost_state": False}
