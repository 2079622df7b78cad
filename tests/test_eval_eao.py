"""VOT expected average overlap: known values, the harness and CLI, and equality with the VOT toolkit.

The toolkit comparison runs vot-toolkit's own supervised experiment (re-initialisation 5
frames after a failure) with a scripted tracker on sequences it loads from disk, and its
own EAO and accuracy analyses; siamtrack's restart harness runs the same script. Integer
boxes make the toolkit's rasterised overlaps exact, so both see the same overlaps.
"""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from siamtrack.cli import cli
from siamtrack.eval import boxes as bx
from siamtrack.eval.harness import evaluate_boxes
from siamtrack.geometry import RotatedBox
from siamtrack.results import TrackResult
from tests.test_eval_boxes import GroundTruthTracker, make_box_folder


def test_restart_segments_split_at_initialisations_and_failures():
    run = {"per_frame": ["init", None, 0.5, "fail", "skip", "skip", "skip", "skip", "init", 0.8, "nogt", 0.6],
           "burn_in_overlaps": {"1": 0.9}}
    assert bx.restart_segments(run) == [([0.9, 0.5], True), ([0.8, 0.6], False)]
    assert bx.restart_segments({"per_frame": ["skip", "init"]}) == [([], False)]


def test_eao_curve_pads_failed_segments_with_zeros_and_cuts_finished_ones():
    curve = bx.eao_curve([([1.0, 1.0], False), ([0.5], True)])
    # length 1: (1 + 0.5) / 2; length 2: (1 + (0.5 + 0) / 2) / 2
    assert curve.tolist() == [0.75, 0.625]
    assert bx.eao_score(curve, (1, 2)) == pytest.approx(0.6875)
    assert bx.eao_score(curve, (2, 100)) == pytest.approx(0.625)  # only the lengths the segments reach
    assert bx.eao_score(curve, (3, 4)) is None
    with pytest.raises(ValueError, match="1 <= lo <= hi"):
        bx.eao_score(curve, (0, 4))
    # A finished segment does not count beyond its length; a failed one always does.
    curve = bx.eao_curve([([0.2], False), ([1.0, 1.0, 1.0], True)])
    assert curve.tolist() == pytest.approx([0.6, 1.0, 1.0])
    assert bx.eao_curve([]).size == 0


def test_restart_harness_reports_eao_over_the_interval(tmp_path):
    make_box_folder(tmp_path, "frames", n=30)
    truth = [(20 + 3 * t, 40, 30, 30) for t in range(30)]
    truth[12] = (140, 100, 5, 5)  # lost on frame 12: re-initialised on 17
    results = evaluate_boxes(tmp_path, GroundTruthTracker(truth), restart=True, eao_interval=(1, 12))
    summary = results["summary"]
    # Segments: frames 1..11 (overlap 1) then a failure; frames 18..29 (overlap 1) to the end.
    assert summary["eao_curve"] == pytest.approx([1.0] * 11 + [(11 / 12 + 1) / 2])
    assert summary["eao"] == pytest.approx((11 + (11 / 12 + 1) / 2) / 12)
    assert summary["eao_interval"] == [1, 12]
    assert "EAO over sequence lengths 1..12" in results["meta"]["protocol"]
    default = evaluate_boxes(tmp_path, GroundTruthTracker(truth), restart=True)["summary"]
    assert default["eao_interval"] == [100, 356] and default["eao"] is None  # no segment is that long


def test_eval_boxes_cli_eao_interval(tmp_path):
    make_box_folder(tmp_path / "data", "frames", n=12)
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(cli, ["eval", "boxes", str(tmp_path / "data"), "--tracker", "opencv-mil", "--restart",
                                 "--eao-interval", "1,5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "EAO:" in result.output and "lengths 1..5" in result.output
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert summary["eao_interval"] == [1, 5] and 0.0 < summary["eao"] <= 1.0
    assert "EAO:" in (out / "results.md").read_text()
    for bad, exit_code in (("5,2", 2), ("7", 2), ("a,b", 2)):
        result = runner.invoke(cli, ["eval", "boxes", str(tmp_path / "data"), "--restart", "--eao-interval", bad])
        assert result.exit_code == exit_code and "LO" in result.output
    result = runner.invoke(cli, ["eval", "boxes", str(tmp_path / "data"), "--eao-interval", "1,5"])
    assert result.exit_code == 2 and "needs --restart" in result.output


class StillTracker:
    """Reports the same box on every frame (the VOT-layout sequences below hold a still target)."""

    arch = "opencv"
    model_name = "still"
    precision = "n/a"
    device = "cpu"
    preset = None

    def __init__(self, box):
        self.box = box

    def init(self, frame, boxes):
        return [0]

    def track(self, frame):
        x, y, w, h = self.box
        rotated = RotatedBox(bx.box_polygon(self.box), x + w / 2, y + h / 2, w, h, 0.0)
        return [TrackResult(0, self.box, rotated, np.zeros((1, 1), bool), np.zeros((1, 1), np.float32), 1.0, "box")]


def test_restart_harness_reads_the_vot_toolkit_layout(tmp_path):
    write_vot_sequence(tmp_path, 20)  # frames in color/, as in a toolkit workspace's sequences/
    results = evaluate_boxes(tmp_path, StillTracker(GT), restart=True, eao_interval=(1, 10))
    assert results["sequences"]["seq20"]["frames"] == 20
    assert results["summary"]["eao"] == pytest.approx(1.0) and results["summary"]["failures"] == 0


# Against the VOT toolkit --------------------------------------------------------------------------

WIDTH, HEIGHT = 160, 120
GT = (40, 30, 60, 40)
FAILURES = {50: [20], 180: [30, 150], 420: [200]}  # sequence length -> frames where the script fails


def scripted_box(frame: int, failures: list[int]) -> tuple[int, int, int, int]:
    """Far from the target on a failure frame, otherwise a box whose overlap varies with the frame."""
    if frame in failures:
        return (130, 100, 10, 10)
    k = (frame * 5) % 37
    return (40 + k % 7, 30 + k % 5, 60 - k, 40 - k % 11)


def write_vot_sequence(root, n: int):
    """A sequence in the VOT toolkit's layout (color/%08d.jpg, groundtruth.txt, sequence)."""
    seq = root / f"seq{n}"
    (seq / "color").mkdir(parents=True)
    black = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for i in range(n):
        cv2.imwrite(str(seq / "color" / f"{i + 1:08d}.jpg"), black)
    (seq / "groundtruth.txt").write_text("".join(",".join(map(str, GT)) + "\n" for _ in range(n)))
    (seq / "sequence").write_text(f"channels.color=color/%08d.jpg\nwidth={WIDTH}\nheight={HEIGHT}\nlength={n}\n")
    return seq


@pytest.fixture(scope="module")
def toolkit_runs(tmp_path_factory):
    """The toolkit's supervised experiment over three sequences, and its EAO curve and per-sequence scores."""
    pytest.importorskip("vot.analysis.supervised", reason="vot-toolkit is a test-only dependency (the dev extra)")
    from vot.analysis.supervised import EAOCurve, compute_accuracy, locate_failures_inits
    from vot.dataset import load_sequence
    from vot.experiment.multirun import SupervisedExperiment
    from vot.region import Rectangle
    from vot.tracker import ObjectStatus, OnlineTrackerRuntime
    from vot.workspace.storage import LocalStorage

    class Scripted(OnlineTrackerRuntime):
        def __init__(self, failures):
            super().__init__(None)
            self.failures = failures

        def stop(self):
            pass

        def restart(self):
            pass

        def initialize(self, frame, new=None, properties=None):
            return [new], 0.0

        def update(self, frame, new=None, properties=None):
            return ObjectStatus(Rectangle(*scripted_box(frame.index, self.failures)), {}), 0.0

    class ScriptedTracker:
        storage = None
        reference = identifier = "scripted"

        def __init__(self, failures):
            self.failures = failures

        def runtime(self, log=False):
            return Scripted(self.failures)

    root = tmp_path_factory.mktemp("vot")
    experiment = SupervisedExperiment("baseline", LocalStorage(str(root)), skip_initialize=5, repetitions=1)
    sequences, per_sequence = [], {}
    for n, failures in FAILURES.items():
        sequence = load_sequence(str(write_vot_sequence(root, n)))
        tracker = ScriptedTracker(failures)
        experiment.execute(tracker, sequence)
        (trajectory,) = experiment.gather(tracker, sequence)
        fails, inits = locate_failures_inits(trajectory.regions())
        accuracy, counted = compute_accuracy(trajectory.regions(), sequence, burnin=bx.BURN_IN)
        per_sequence[n] = {"failures": fails, "inits": inits, "accuracy": accuracy, "counted": counted}
        sequences.append(sequence)
    # The curve over all sequences' segments, as the toolkit's EAO score analysis averages it.
    (curve,) = EAOCurve().subcompute(experiment, ScriptedTracker(None), sequences, [])
    return np.asarray(curve, np.float64), per_sequence


def siamtrack_runs() -> dict[int, dict]:
    runs = {}
    for n, failures in FAILURES.items():
        inits: list[int] = []
        polys = [bx.box_polygon(GT)] * n
        runs[n] = bx.vot_restart(n, polys, inits.append,
                                 lambda f, failures=failures: bx.box_polygon(scripted_box(f, failures)),
                                 bounds=(WIDTH, HEIGHT))
        runs[n]["inits"] = inits
    return runs


def test_restart_protocol_matches_the_vot_toolkit(toolkit_runs):
    _, toolkit = toolkit_runs
    for n, ours in siamtrack_runs().items():
        theirs = toolkit[n]
        assert ours["failure_frames"] == theirs["failures"] == FAILURES[n]
        assert ours["inits"] == theirs["inits"]  # re-initialised on the 5th frame after each failure
        assert ours["counted_frames"] == theirs["counted"]  # 10 burn-in frames from each initialisation
        assert abs(ours["accuracy"] - theirs["accuracy"]) < 1e-12


@pytest.mark.parametrize("interval", [(100, 356), (1, 5), (10, 50), (150, 250), (200, 300), (300, 400)])
def test_eao_matches_the_vot_toolkit(toolkit_runs, interval):
    curve, _ = toolkit_runs
    ours = bx.restart_summary(list(siamtrack_runs().values()), interval)
    # The toolkit's curve has a column for the initialisation frame (length 0) in front.
    assert len(ours["eao_curve"]) == len(curve) - 1 == 214  # the longest segment: frames 205..419 of seq420
    np.testing.assert_allclose(ours["eao_curve"], curve[1:], rtol=0, atol=1e-6)
    theirs = toolkit_eao(curve, interval)
    if np.isnan(theirs):  # every segment is shorter than the interval: the toolkit's mean is NaN
        assert ours["eao"] is None and interval[0] > 214
    else:
        assert abs(ours["eao"] - theirs) < 1e-6


def toolkit_eao(curve: np.ndarray, interval: tuple[int, int]) -> float:
    """The toolkit's EAO score analysis (VOT-2018: low 100, high 356) on its curve."""
    from vot.analysis.supervised import EAOScore
    from vot.utilities.data import Grid

    curves = Grid(1, 1)
    curves[0, 0] = (curve,)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of an empty interval
        (score,) = EAOScore(low=interval[0], high=interval[1]).compute(None, [], [], [curves])[0, 0]
    return score
