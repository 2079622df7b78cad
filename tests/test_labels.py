"""Training-set exports (COCO, YouTube-VIS, YOLO, CVAT, MOT), polygons, and keyframe corrections.

Driven by the oracle tracker on a generated clip, so every label can be compared with the
clip's exact masks: RLE decoded by pycocotools equals them, polygons rasterised back (as
supervision and ultralytics do, cv2.fillPoly) reach IoU >= 0.98, supervision loads the COCO
and YOLO exports with the right counts and classes. A wrapper makes object 0 lost and
uncertain on chosen frames. One test replays a DAVIS dev sequence's masks (skipped without
../shared).
"""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from siamtrack.commands import _common
from siamtrack.errors import SiamtrackError
from siamtrack.geometry import box_mask
from siamtrack.io import synthetic
from siamtrack.io.labels import DatasetOptions, open_dataset
from siamtrack.io.polygons import PolygonFit, join_polygons, mask_polygons, polygon_iou, polygon_mask
from siamtrack.io.sinks import render
from siamtrack.keyframes import check_keyframes, keyframe_schedule, read_keyframes
from siamtrack.results import TrackResult
from siamtrack.stream import given_result
from tests.conftest import SHARED, need
from tests.test_cli_run import SIZE, N, box_arg, clip, invoke  # noqa: F401 - clip is a fixture

coco_mask = pytest.importorskip("pycocotools.mask")
LOST, UNCERTAIN = {4, 5}, {7}  # clip frames where object 0 is lost / uncertain
STATIC = (5.0, 5.0, 20.0, 10.0)  # object 1: the oracle keeps it where it was given


class Flaky(synthetic.OracleTracker):
    """The oracle, with object 0 lost on LOST frames and flagged uncertain on UNCERTAIN ones."""

    def init(self, frame, boxes, **kw):
        self.frame = 0
        return super().init(frame, boxes, **kw)

    def track(self, frame, **kw):
        results = super().track(frame, **kw)
        self.frame += 1
        h, w = frame.shape[:2]
        if self.frame in LOST:
            results[0] = TrackResult(0, None, None, np.zeros((h, w), bool), np.zeros((h, w), np.float32), 0.1,
                                     "lost", "lost")
        elif self.frame in UNCERTAIN:
            results[0] = dataclasses.replace(results[0], state="uncertain", score=0.4)
        return results


@pytest.fixture
def flaky(monkeypatch):
    monkeypatch.setattr(_common, "make_tracker", lambda *a, **k: Flaky(N, SIZE))


def export(capsys, clip, out: Path, fmt: str, *extra: str, labels: tuple[str, ...] = ("sprite", "patch")  # noqa: F811
           ) -> tuple[int, str, str]:
    names = [arg for name in labels for arg in ("--label", name)]
    return invoke(capsys, "export-masks", clip["video"], "--bbox", box_arg(clip["gt"]["init_box"]), "--bbox",
                  box_arg(STATIC), *names, "--format", fmt, "--out", out, "--quiet", *extra)


def truth(clip, frame: int, obj: int) -> np.ndarray:  # noqa: F811
    """What the export must hold for an object on a frame: the given box on frame 0, then the track."""
    if obj == 1:
        return box_mask(SIZE[::-1], STATIC)
    return box_mask(SIZE[::-1], clip["gt"]["init_box"]) if frame == 0 else clip["masks"][frame]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a & b) / np.count_nonzero(a | b))


def visible(frame: int, obj: int) -> bool:
    return obj != 0 or frame not in LOST


# -- polygons ------------------------------------------------------------------------------------


def test_polygons_keep_holes_and_parts():
    """A ring and a separate square: two polygons, the hole joined in; filled back exactly at
    tolerance 0; joined into one outline for one-polygon formats at IoU > 0.99."""
    m = np.zeros((100, 100), np.uint8)
    cv2.circle(m, (50, 50), 30, 1, -1)
    cv2.circle(m, (50, 50), 10, 0, -1)
    m[5:15, 80:95] = 1
    m[90, 5] = 1  # a single pixel: too small for a polygon
    mask = m.astype(bool)
    polys = mask_polygons(mask, 0)
    assert len(polys) == 2 and all(p.shape[1] == 2 and len(p) >= 3 for p in polys)
    assert np.array_equal(polygon_mask(polys, mask.shape), mask & ~(np.arange(100)[:, None] == 90))
    assert not polygon_mask(polys, mask.shape)[50, 50]  # the hole stays empty
    joined = join_polygons(polys)
    assert iou(polygon_mask([joined], mask.shape), mask) > 0.99
    assert 0.97 < polygon_iou(mask, mask_polygons(mask, 1.0)) < 0.99  # the simplification costs IoU here
    fit = PolygonFit(min_iou=0.99)  # so the fit writes this one exact
    assert len(fit.polygons(mask, 1.0)[0]) > len(mask_polygons(mask, 1.0)[0])
    assert fit.to_dict()["unsimplified"] == 1 and fit.to_dict()["min_iou"] > 0.999
    assert PolygonFit(min_iou=0.9).polygons(mask, 1.0)[0].shape == mask_polygons(mask, 1.0)[0].shape
    assert mask_polygons(np.zeros((10, 10), bool)) == [] and join_polygons([]) is None


def test_joining_parts_drops_a_far_fragment_smaller_than_its_cut():
    """One outline per object: a near part is joined by a cut, a 3x3 fragment 150 px away is
    dropped (9 pixels lost instead of about 150 drawn)."""
    mask = np.zeros((200, 300), bool)
    mask[20:80, 20:80] = True  # the object
    mask[20:80, 90:110] = True  # a part 10 px to its right: joined
    mask[180:183, 250:253] = True  # a far speck: dropped
    joined = join_polygons(mask_polygons(mask, 0))
    drawn = polygon_mask([joined], mask.shape)
    assert not drawn[180:183, 250:253].any() and drawn[20:80, 90:110].all() and drawn[20:80, 20:80].all()
    assert np.count_nonzero(drawn & ~mask) <= 12  # the cut to the near part only


# -- formats -------------------------------------------------------------------------------------


def test_coco_rle_decodes_to_the_masks_exactly(clip, flaky, capsys, tmp_path):  # noqa: F811
    code, _, err = export(capsys, clip, tmp_path / "coco", "coco")
    assert code == 0, err
    from pycocotools.coco import COCO

    coco = COCO(str(tmp_path / "coco" / "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["sprite", "patch"]
    assert len(coco.getImgIds()) == N
    assert len(coco.getAnnIds()) == 2 * N - len(LOST)
    for image in coco.loadImgs(coco.getImgIds()):
        k = image["frame_index"]
        assert (tmp_path / "coco" / "images" / image["file_name"]).is_file()
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert sorted(a["track_id"] for a in anns) == [o for o in (0, 1) if visible(k, o)]
        for a in anns:
            want = truth(clip, k, a["track_id"])
            assert np.array_equal(coco.annToMask(a).astype(bool), want)
            assert a["area"] == np.count_nonzero(want) and a["iscrowd"] == 0
            assert a["bbox"] == list(map(float, cv2.boundingRect(want.view(np.uint8))))
            assert a["category_id"] == a["track_id"] + 1
            assert a["attributes"]["uncertain"] == (k in UNCERTAIN and a["track_id"] == 0)
            assert a["attributes"]["corrected"] == (k == 0)
    assert cv2.imread(str(tmp_path / "coco" / "images" / "00003.jpg")).shape == (SIZE[1], SIZE[0], 3)


def test_ytvis_rle_per_frame_with_null_where_lost(clip, flaky, capsys, tmp_path):  # noqa: F811
    assert export(capsys, clip, tmp_path / "vis", "ytvis")[0] == 0
    doc = json.loads((tmp_path / "vis" / "instances.json").read_text())
    (video,) = doc["videos"]
    assert video["length"] == N and len(video["file_names"]) == N
    assert (tmp_path / "vis" / "JPEGImages" / video["file_names"][3]).is_file()
    assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == ["JPEGImages", "instances.json"]
    assert [c["name"] for c in doc["categories"]] == ["sprite", "patch"]
    assert len(doc["annotations"]) == 2
    for ann in doc["annotations"]:
        obj = ann["track_id"]
        assert len(ann["segmentations"]) == len(ann["bboxes"]) == len(ann["areas"]) == N
        for k, seg in enumerate(ann["segmentations"]):
            if not visible(k, obj):
                assert seg is None and ann["bboxes"][k] is None and ann["states"][k] == "lost"
                continue
            assert np.array_equal(coco_mask.decode(seg).astype(bool), truth(clip, k, obj))


def test_coco_polygons_and_yolo_load_in_supervision(clip, flaky, capsys, tmp_path):  # noqa: F811
    sv = pytest.importorskip("supervision")
    assert export(capsys, clip, tmp_path / "poly", "coco", "--polygons")[0] == 0
    assert export(capsys, clip, tmp_path / "yolo", "yolo")[0] == 0
    assert "names:\n  0: \"sprite\"\n  1: \"patch\"\n" in (tmp_path / "yolo" / "data.yaml").read_text()
    coco = sv.DetectionDataset.from_coco(str(tmp_path / "poly" / "images"), str(tmp_path / "poly" / "annotations.json"),
                                         force_masks=True)
    yolo = sv.DetectionDataset.from_yolo(str(tmp_path / "yolo" / "images"), str(tmp_path / "yolo" / "labels"),
                                         str(tmp_path / "yolo" / "data.yaml"), force_masks=True)
    for ds, class_of in ((coco, {0: 0, 1: 1}), (yolo, {0: 0, 1: 1})):
        assert ds.classes == ["sprite", "patch"] and len(ds) == N
        ious = []
        for path, _, det in ds:
            k = int(Path(path).stem)
            want = [o for o in (0, 1) if visible(k, o)]
            assert sorted(det.class_id.tolist()) == [class_of[o] for o in want]
            for cls, mask in zip(det.class_id, det.mask, strict=True):
                ious.append(iou(mask, truth(clip, k, int(cls))))
        assert min(ious) >= 0.98, min(ious)


def test_cvat_video_xml_has_a_track_per_object_with_outside_where_lost(clip, flaky, capsys, tmp_path):  # noqa: F811
    code, _, err = export(capsys, clip, tmp_path / "cvat", "cvat")
    assert code == 0, err
    root = ET.parse(tmp_path / "cvat" / "annotations.xml").getroot()
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    task = root.find("meta/task")
    assert task.findtext("size") == str(N) and task.findtext("mode") == "interpolation"
    assert (task.findtext("original_size/width"), task.findtext("original_size/height")) == tuple(map(str, SIZE))
    assert [lb.findtext("name") for lb in task.findall("labels/label")] == ["sprite", "patch"]
    tracks = root.findall("track")
    assert [(t.get("id"), t.get("label")) for t in tracks] == [("0", "sprite"), ("1", "patch")]
    for track in tracks:
        obj = int(track.get("id"))
        shapes = track.findall("polygon")
        assert [int(s.get("frame")) for s in shapes] == list(range(N))
        assert all(s.get("keyframe") == "1" for s in shapes)
        for s in shapes:
            k = int(s.get("frame"))
            assert s.get("outside") == ("0" if visible(k, obj) else "1")
            attrs = {a.get("name"): a.text for a in s.findall("attribute")}
            assert attrs == {"uncertain": str(obj == 0 and k in UNCERTAIN).lower(), "corrected": str(k == 0).lower()}
            if visible(k, obj):
                pts = np.array([p.split(",") for p in s.get("points").split(";")], float)
                assert iou(polygon_mask([np.round(pts).astype(np.int32)], SIZE[::-1]), truth(clip, k, obj)) >= 0.98
    assert (tmp_path / "cvat" / "images" / f"frame_{N - 1:06d}.jpg").is_file()
    assert export(capsys, clip, tmp_path / "boxes", "cvat", "--boxes", "--frames", "none")[0] == 0
    box = ET.parse(tmp_path / "boxes" / "annotations.xml").getroot().find("track/box[@frame='2']")
    x, y, w, h = cv2.boundingRect(truth(clip, 2, 0).view(np.uint8))
    assert [float(box.get(k)) for k in ("xtl", "ytl", "xbr", "ybr")] == [x, y, x + w, y + h]
    assert not (tmp_path / "boxes" / "images").exists()


def test_mot_rows_are_one_based_and_skip_lost_frames(clip, flaky, capsys, tmp_path):  # noqa: F811
    assert export(capsys, clip, tmp_path / "mot", "mot", "--frames", "png")[0] == 0
    rows = [line.split(",") for line in (tmp_path / "mot" / "gt" / "gt.txt").read_text().splitlines()]
    assert len(rows) == 2 * N - len(LOST)
    for row in rows:
        frame, obj = int(row[0]) - 1, int(row[1]) - 1
        assert visible(frame, obj) and row[7:] == ["-1", "-1", "-1"]
        want = cv2.boundingRect(truth(clip, frame, obj).view(np.uint8))
        assert [float(v) for v in row[2:6]] == list(map(float, want))
    assert "seqLength=12\n" in (tmp_path / "mot" / "seqinfo.ini").read_text()
    img1 = tmp_path / "mot" / "img1"
    assert (img1 / "000001.png").is_file() and not (img1 / "000000.png").exists()


# -- run --export, interruption, bad input ---------------------------------------------------------


def test_run_export_writes_the_video_and_the_dataset_in_one_pass(clip, flaky, capsys, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    code, stdout, err = invoke(capsys, "run", clip["video"], "--bbox", box_arg(clip["gt"]["init_box"]), "--out", out,
                               "--export", "yolo", "--label", "sprite")
    assert code == 0, err
    assert stdout.strip() == str(out) and "Polygons (tolerance 1 px) vs masks: mean IoU" in err
    assert (out / "annotated.mp4").stat().st_size > 0 and (out / "tracks.json").is_file()
    labels = sorted((out / "yolo" / "labels").iterdir())
    assert len(labels) == N and sum(bool(p.read_text()) for p in labels) == N - len(LOST)
    assert len(list((out / "yolo" / "images").iterdir())) == N
    # --overwrite replaces the dataset with the rest of the run's outputs
    assert invoke(capsys, "run", clip["video"], "--bbox", "1,1,5,5", "--out", out, "--no-video", "--quiet")[0] == 1
    assert invoke(capsys, "run", clip["video"], "--bbox", "1,1,5,5", "--out", out, "--no-video", "--quiet",
                  "--overwrite")[0] == 0
    assert not (out / "yolo").exists() and not (out / "annotated.mp4").exists()


@pytest.mark.parametrize("fmt", ["coco", "ytvis"])
def test_rle_of_run_export_equals_runs_mask_pngs(clip, flaky, capsys, tmp_path, fmt):  # noqa: F811
    out = tmp_path / "run"
    code, _, err = invoke(capsys, "run", clip["video"], "--bbox", box_arg(clip["gt"]["init_box"]), "--bbox",
                          box_arg(STATIC), "--out", out, "--export", fmt, "--no-video", "--quiet", "--frames", "none")
    assert code == 0, err
    if fmt == "coco":
        doc = json.loads((out / "coco" / "annotations.json").read_text())
        frame_of = {im["id"]: im["frame_index"] for im in doc["images"]}
        rles = {(frame_of[a["image_id"]], a["track_id"]): a["segmentation"] for a in doc["annotations"]}
    else:
        doc = json.loads((out / "ytvis" / "instances.json").read_text())
        rles = {(k, a["track_id"]): seg for a in doc["annotations"] for k, seg in enumerate(a["segmentations"]) if seg}
    assert len(rles) == 2 * N - len(LOST)
    for (k, obj), rle in rles.items():
        png = cv2.imread(str(out / "masks" / str(obj) / f"{k:05d}.png"), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(coco_mask.decode(rle).astype(bool), png > 0)
    for k in LOST:
        assert not cv2.imread(str(out / "masks" / "0" / f"{k:05d}.png"), cv2.IMREAD_GRAYSCALE).any()


@pytest.mark.parametrize("command", ["export-masks", "run"])
def test_an_interrupted_export_leaves_a_valid_dataset_of_the_frames_done(clip, monkeypatch, capsys, tmp_path,  # noqa: F811
                                                                          command):
    tracker = synthetic.OracleTracker(N, SIZE)
    real, calls = tracker.track, []

    def track(frame, **kw):
        calls.append(1)
        if len(calls) >= 5:
            raise KeyboardInterrupt
        return real(frame, **kw)

    tracker.track = track
    monkeypatch.setattr(_common, "make_tracker", lambda *a, **k: tracker)
    if command == "run":
        code, _, err = invoke(capsys, "run", clip["video"], "--bbox", box_arg(clip["gt"]["init_box"]), "--bbox",
                              box_arg(STATIC), "--out", tmp_path / "cut", "--export", "coco", "--quiet")
        dataset = tmp_path / "cut" / "coco"
    else:
        code, _, err = export(capsys, clip, tmp_path / "cut", "coco")
        dataset = tmp_path / "cut"
    assert code == 130 and "Interrupted" in err
    doc = json.loads((dataset / "annotations.json").read_text())
    assert len(doc["images"]) == 5 and len(doc["annotations"]) == 10
    assert sorted(p.name for p in (dataset / "images").iterdir()) == [f"{k:05d}.jpg" for k in range(5)]
    assert not list(dataset.glob("*.tmp"))


def write_keyframes(path: Path, rows: list[tuple]) -> Path:
    path.write_text("frame,object,x,y,w,h\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "yolo", "--polygons"], "--polygons is for --format coco"),
    (["--format", "coco", "--boxes"], "--boxes is for --format cvat"),
    (["--format", "coco", "--label", "a", "--label", "b", "--label", "c"], "3 --label for 2 objects"),
    (["--format", "png", "--frames", "jpg"], "--frames is for the dataset formats"),
    (["--format", "mot", "--keyframes", [(40, 0, 1, 1, 5, 5)]], "keyframe at frame 40 is outside the video"),
    (["--format", "mot", "--keyframes", [(3, 4, 1, 1, 5, 5)]], "keyframe for unknown object 4"),
    (["--format", "mot", "--keyframes", [(3, 0, 1, 1, 0, 5)]], "has no area"),
    (["--format", "mot", "--keyframes", [(0, 0, 1, 1, 5, 5)]], "that is the first frame"),
    (["--format", "mot", "--start", "2", "--keyframes", [(1, 0, 1, 1, 5, 5)]], "outside the video"),
])
def test_bad_input_is_one_line_before_any_work(clip, capsys, tmp_path, monkeypatch, args, message):  # noqa: F811
    def no_model(*_a, **_k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(_common, "make_tracker", no_model)
    args = [str(write_keyframes(tmp_path / "kf.csv", a)) if isinstance(a, list) else a for a in args]
    code, _, err = invoke(capsys, "export-masks", clip["video"], "--bbox", "1,1,9,9", "--bbox", "20,20,9,9",
                          "--out", tmp_path / "o", *args)
    assert code != 0 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_a_dataset_export_into_a_non_empty_folder_needs_overwrite(clip, flaky, capsys, tmp_path):  # noqa: F811
    out = tmp_path / "full"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = export(capsys, clip, out, "mot")
    assert code == 1 and "--overwrite" in err and not (out / "gt").exists()
    assert export(capsys, clip, out, "mot", "--overwrite")[0] == 0
    assert (out / "gt" / "gt.txt").is_file() and (out / "notes.txt").read_text() == "mine"


# -- keyframes -------------------------------------------------------------------------------------


def test_keyframes_read_from_json_and_csv_alike(tmp_path):
    rows = [(6, 1, 10, 20, 30, 40), (3, 0, 1.5, 2, 3, 4)]
    csv_plain = tmp_path / "a.csv"
    csv_plain.write_text("".join(",".join(map(str, r)) + "\n" for r in rows))
    js = tmp_path / "a.json"
    js.write_text(json.dumps([dict(zip(("frame", "object", "x", "y", "w", "h"), r, strict=True)) for r in rows]))
    got = [read_keyframes(p) for p in (write_keyframes(tmp_path / "h.csv", rows), csv_plain, js)]
    assert got[0] == got[1] == got[2] and got[0][1].box == (1.5, 2.0, 3.0, 4.0)
    assert keyframe_schedule(got[0]) == {3: [(0, (1.5, 2.0, 3.0, 4.0))], 6: [(1, (10.0, 20.0, 30.0, 40.0))]}
    check_keyframes(got[0], 2, 0, 10)
    with pytest.raises(SiamtrackError, match="two keyframes for object 0 at frame 3"):
        check_keyframes(got[0] + got[0][1:], 2, 0, 10)
    with pytest.raises(SiamtrackError, match="object 3 enters at frame 2, before object 2"):
        check_keyframes(read_keyframes(write_keyframes(tmp_path / "o.csv", [(5, 2, 1, 1, 4, 4), (2, 3, 1, 1, 4, 4)])),
                        2, 0, 10)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"frame": 1, "object": 0, "x": 1}]')
    with pytest.raises(SiamtrackError, match="missing y, w, h"):
        read_keyframes(bad)


def test_keyframes_reinitialise_an_object_from_that_frame_and_add_one_that_enters(clip, monkeypatch, capsys,  # noqa: F811
                                                                                   tmp_path):
    monkeypatch.setattr(_common, "make_tracker", lambda *a, **k: synthetic.OracleTracker(N, SIZE))
    moved, entering = (100.0, 60.0, 30.0, 30.0), (10.0, 80.0, 20.0, 20.0)
    kf = write_keyframes(tmp_path / "kf.csv", [(5, 1, *moved), (7, 2, *entering)])
    code, _, err = export(capsys, clip, tmp_path / "kf", "coco", "--keyframes", kf,
                          labels=("sprite", "patch", "patch"))
    assert code == 0, err
    doc = json.loads((tmp_path / "kf" / "annotations.json").read_text())
    by = {(a["image_id"] - 1, a["track_id"]): a for a in doc["annotations"]}
    for k in range(N):
        assert by[(k, 1)]["bbox"] == list(STATIC if k < 5 else moved)
        assert by[(k, 1)]["attributes"]["corrected"] == (k in (0, 5))
        assert ((k, 2) in by) == (k >= 7)
        assert np.array_equal(coco_mask.decode(by[(k, 0)]["segmentation"]).astype(bool), truth(clip, k, 0))
    assert by[(7, 2)]["bbox"] == list(entering) and by[(7, 2)]["category_id"] == 2


def test_the_annotated_video_marks_keyframes():
    frame = np.zeros((60, 80, 3), np.uint8)
    plain = render(frame, [given_result(0, (20, 20, 30, 20), frame.shape[:2], "init")])
    marked = render(frame, [given_result(0, (20, 20, 30, 20), frame.shape[:2], "keyframe")])
    white = np.all(marked > 240, axis=2)
    assert white.sum() > 100 and np.all(plain > 240, axis=2).sum() < white.sum() / 4


@pytest.mark.slow
def test_tracker_reinit_replaces_one_template_and_adds_an_object(synthetic_checkpoint):
    from siamtrack.api import from_checkpoint

    frames = [f.image for f in synthetic.frames(3, (160, 120))]
    tracker = from_checkpoint(synthetic_checkpoint, device="cpu")
    tracker.init(frames[0], [(20, 20, 40, 40), (90, 40, 30, 30)])
    before = [k.clone() for k in tracker._kernels]
    assert tracker.reinit(frames[1], 1, (100, 50, 20, 24)) == 1
    np.testing.assert_allclose(tracker.states[1].center, np.array([110, 62]) + tracker.style.center_offset)
    np.testing.assert_allclose(tracker.states[1].size, (20, 24))
    for old, new in zip(before, tracker._kernels, strict=True):
        assert new.shape == old.shape and torch_equal(new[0], old[0]) and not torch_equal(new[1], old[1])
    assert tracker.reinit(frames[1], 2, (10, 10, 16, 16)) == 2
    assert [r.obj_id for r in tracker.track(frames[2])] == [0, 1, 2]
    with pytest.raises(SiamtrackError, match="a new one takes id 3"):
        tracker.reinit(frames[2], 5, (10, 10, 16, 16))


def test_template_rows_are_replaced_or_appended_in_tensors_and_kernel_tuples():
    """What reinit does to ``net.template``'s output: a tensor (fp32-reference) or a tuple of them."""
    import torch

    from siamtrack.models import TemplateKernels
    from siamtrack.state import replace_row

    rows = torch.arange(3.0).reshape(3, 1)
    assert replace_row(rows, 1, torch.tensor([[9.0]])).ravel().tolist() == [0, 9, 2]
    assert replace_row(rows, 3, torch.tensor([[9.0]])).ravel().tolist() == [0, 1, 2, 9]
    kernels = TemplateKernels(rows, rows * 10, rows * 100)
    new = TemplateKernels(*(torch.tensor([[-v]]) for v in (1.0, 2.0, 3.0)))
    out = replace_row(kernels, 0, new)
    assert isinstance(out, TemplateKernels) and [k.ravel().tolist() for k in out] == [[-1, 1, 2], [-2, 10, 20],
                                                                                      [-3, 100, 200]]


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


# -- a dev sequence ----------------------------------------------------------------------------------


class _Mask:
    """A DAVIS ground-truth mask as a tracking result."""

    def __init__(self, obj_id: int, mask: np.ndarray) -> None:
        self.obj_id, self.mask, self.score, self.state, self.polygon_source = obj_id, mask, 1.0, "tracked", "mask"


@pytest.mark.parametrize("seq", ["libby", "kite-surf"])
def test_davis_masks_survive_every_format(seq, tmp_path):
    """The dev sequence's own masks through the exports: RLE exact, polygons at IoU >= 0.98."""
    from PIL import Image

    folder = need(SHARED / "data" / "davis" / "Annotations" / "480p" / seq)
    labels = [np.array(Image.open(p)) for p in sorted(folder.glob("*.png"))[::8]]
    ids = [int(v) for v in np.unique(np.concatenate([np.unique(lb) for lb in labels])) if v]
    h, w = labels[0].shape
    sinks = {fmt: open_dataset(fmt, tmp_path / fmt, (w, h), len(ids), DatasetOptions(frames="none",
                                                                                     polygons=fmt == "coco"))
             for fmt in ("coco", "yolo", "cvat", "ytvis")}
    for k, label in enumerate(labels):
        results = [_Mask(i, label == v) for i, v in enumerate(ids)]
        for sink in sinks.values():
            sink.add(k, np.zeros((h, w, 3), np.uint8), results)
    fits = {fmt: sink.close().get("polygon_fit") for fmt, sink in sinks.items()}
    for fmt in ("coco", "yolo", "cvat"):
        assert fits[fmt]["mean_iou"] >= 0.98, (fmt, fits[fmt])
    doc = json.loads((tmp_path / "ytvis" / "instances.json").read_text())
    for i, ann in enumerate(doc["annotations"]):
        for k, seg in enumerate(ann["segmentations"]):
            want = labels[k] == ids[i]
            assert (seg is None) == (not want.any())
            if seg is not None:
                assert np.array_equal(coco_mask.decode(seg).astype(bool), want)


# -- batch: the manifest's keyframes field -----------------------------------------------------------


def test_batch_entries_take_keyframes_and_bad_ones_fail_before_any_work(clip, monkeypatch, capsys, tmp_path):  # noqa: F811
    monkeypatch.setattr(_common, "make_tracker", lambda *a, **k: synthetic.OracleTracker(N, SIZE))
    moved = (100.0, 60.0, 30.0, 30.0)
    write_keyframes(tmp_path / "fix.csv", [(5, 1, *moved)])
    row = {"source": clip["video"], "bbox": [clip["gt"]["init_box"], list(STATIC)], "keyframes": "fix.csv"}
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(row) + "\n")
    code, _, err = invoke(capsys, "batch", manifest, "--out", tmp_path / "out", "--quiet", "--no-video")
    assert code == 0, err
    doc = json.loads((tmp_path / "out" / "clip" / "tracks.json").read_text())
    boxes = [rec["box"] for rec in doc["objects"]["1"]]
    assert boxes[:5] == [list(STATIC)] * 5 and boxes[5:] == [list(moved)] * (N - 5)
    assert json.loads((tmp_path / "out" / "batch.json").read_text())["entries"][0]["spec"]["keyframes"] == [
        [5, 1, *moved]]

    write_keyframes(tmp_path / "bad.csv", [(5, 3, *moved)])
    manifest.write_text(json.dumps({**row, "keyframes": "bad.csv"}) + "\n")
    code, _, err = invoke(capsys, "batch", manifest, "--out", tmp_path / "out2")
    assert code == 1 and err.startswith("Error: m.jsonl line 1: keyframe for unknown object 3") and err.count("\n") == 1
    assert not (tmp_path / "out2").exists()

    write_keyframes(tmp_path / "late.csv", [(50, 1, *moved)])
    manifest.write_text(json.dumps({**row, "keyframes": "late.csv"}) + "\n")
    code, _, err = invoke(capsys, "batch", manifest, "--out", tmp_path / "out3", "--quiet", "--no-video")
    assert code == 1
    entry = json.loads((tmp_path / "out3" / "batch.json").read_text())["entries"][0]
    assert entry["status"] == "failed" and "keyframe at frame 50 is outside the video" in entry["error"]


@pytest.mark.parametrize(("fmt", "layout"), [
    ("coco", ["annotations.json", "images"]), ("ytvis", ["JPEGImages", "instances.json"]),
    ("yolo", ["data.yaml", "images", "labels"]), ("cvat", ["annotations.xml", "images"]),
    ("mot", ["gt", "img1", "seqinfo.ini"]),
])
def test_each_format_writes_its_documented_layout_and_nothing_else(clip, flaky, capsys, tmp_path, fmt, layout):  # noqa: F811
    assert export(capsys, clip, tmp_path / fmt, fmt)[0] == 0
    assert sorted(p.name for p in (tmp_path / fmt).iterdir()) == layout
    images = next(p for p in (tmp_path / fmt).rglob("*") if p.suffix == ".jpg").parent
    assert len(list(images.iterdir())) == N


@pytest.mark.slow
def test_a_keyframe_moves_the_shipped_trackers_track_from_that_frame(clip, tmp_path):  # noqa: F811
    """With the real tracker: a keyframe that puts object 0 on the other side of the frame makes
    the track start there (the frames before it are the same as without the keyframe)."""
    from siamtrack.api import from_pretrained
    from siamtrack.io.sources import open_source
    from siamtrack.keyframes import Keyframe
    from siamtrack.stream import track_stream

    tracker = from_pretrained("siammask-lite", device="cpu", precision="fp32-reference")  # no tracing
    corner = (110.0, 70.0, 40.0, 40.0)

    class Boxes:
        def __init__(self, _start):
            self.rows = []

        def write(self, index, timestamp, image, results, annotated=None):
            self.rows.append([(r.obj_id, r.box, r.polygon_source) for r in results])

        def close(self, extra_meta=None):
            return {"rows": self.rows}

    def boxes(keyframes):
        frames = open_source(clip["video"]).frames(0, 8)
        return track_stream(tracker, frames, [clip["gt"]["init_box"]], Boxes, keyframes=keyframes).outputs["rows"]

    plain, fixed = boxes(None), boxes(keyframe_schedule([Keyframe(4, 0, corner)]))
    assert fixed[:4] == plain[:4] and fixed[4] == [(0, corner, "keyframe")]
    cx = [row[0][1][0] + row[0][1][2] / 2 for row in fixed[5:]]
    plain_cx = [row[0][1][0] + row[0][1][2] / 2 for row in plain[5:]]
    assert all(abs(c - 130) < 25 for c in cx) and all(abs(c - 130) > 40 for c in plain_cx), (cx, plain_cx)
