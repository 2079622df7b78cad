"""Training data readers on small synthetic copies of each official layout, and model init."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from siamtrack.errors import SiamtrackError
from siamtrack.train import datasets as ds
from tests.conftest import SHARED, need


def _palette_png(path: Path, label: np.ndarray) -> None:
    im = Image.fromarray(label.astype(np.uint8), mode="P")
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (256 * 3 - 12))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def _jpg(path: Path, h: int = 60, w: int = 80) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))


def _two_objects(i: int) -> np.ndarray:
    """Object 1 moves right; object 2 exists only from frame 1 on."""
    label = np.zeros((60, 80), np.uint8)
    label[10:20, 5 + i:15 + i] = 1
    if i >= 1:
        label[30:50, 40:44] = 2
    return label


def test_davis2017_palette_layout_gives_one_track_per_object(tmp_path):
    for i in range(3):
        _jpg(tmp_path / "JPEGImages" / "480p" / "seq" / f"{i:05d}.jpg")
        _palette_png(tmp_path / "Annotations" / "480p" / "seq" / f"{i:05d}.png", _two_objects(i))
    tracks = ds.davis_tracks(tmp_path)
    assert [t.name for t in tracks] == ["seq/1", "seq/2"]
    one, two = tracks
    np.testing.assert_array_equal(one.boxes[2], [7, 10, 10, 10])
    assert np.isnan(two.boxes[0, 0]) and list(two.valid) == [1, 2]
    cache = ds.FrameCache()
    assert cache.mask(two, 1).max() == 255 and np.count_nonzero(cache.mask(two, 1)) == 80
    assert np.count_nonzero(cache.mask(one, 1)) == 100


def test_shared_videos_layout_binary_masks_and_empty_frames(tmp_path):
    seq = tmp_path / "videos" / "clip"
    (seq / "Annotations").mkdir(parents=True)
    for i in range(3):
        _jpg(seq / "JPEGImages" / f"{2 * i:05d}.jpg")
        m = np.zeros((60, 80), np.uint8)
        if i != 1:  # an empty mask: the object is out of view
            m[5:25, 30:40] = 255
        cv2.imwrite(str(seq / "Annotations" / f"{2 * i:05d}.png"), m)
    (track,) = ds.davis_tracks(tmp_path / "videos")
    assert track.name == "clip" and track.mask_id is None
    assert list(track.valid) == [0, 2]
    np.testing.assert_array_equal(track.boxes[0], [30, 5, 10, 20])
    assert ds.davis_tracks(tmp_path / "videos", exclude=["clip"]) == []


def test_youtube_vos_layout_reads_meta_and_palette_ids(tmp_path):
    names = ["00000", "00005", "00010"]
    for i, n in enumerate(names):
        _jpg(tmp_path / "JPEGImages" / "vid1" / f"{n}.jpg")
        _palette_png(tmp_path / "Annotations" / "vid1" / f"{n}.png", _two_objects(i))
    meta = {"videos": {"vid1": {"objects": {"1": {"category": "a", "frames": names},
                                            "2": {"category": "b", "frames": names[1:]}}}}}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    one, two = ds.youtube_vos_tracks(tmp_path)
    assert (one.name, two.name) == ("vid1/1", "vid1/2")
    assert len(one.frames) == 3 and len(two.frames) == 2
    assert one.frames[1].name == "00005.jpg"
    np.testing.assert_array_equal(two.boxes[0], [40, 30, 4, 20])
    np.testing.assert_array_equal(one.boxes[2], [7, 10, 10, 10])


def test_box_only_sequences_xywh_and_polygons(tmp_path):
    a, b = tmp_path / "a" / "img", tmp_path / "b" / "frames"
    for i in range(3):
        _jpg(a / f"{i + 1:04d}.jpg")
        _jpg(b / f"{i + 1:08d}.jpg")
    (tmp_path / "a" / "groundtruth_rect.txt").write_text("1\t2\t10\t20\n2\t2\t10\t20\n3\t2\t10\t20\n")
    (tmp_path / "b" / "groundtruth.txt").write_text("\n".join(["10,10,30,12,28,40,8,38"] * 2) + "\n")
    ta, tb = ds.box_tracks(tmp_path)
    np.testing.assert_array_equal(ta.boxes[1], [2, 2, 10, 20])
    assert len(tb.frames) == 2  # frames beyond the ground truth are dropped
    np.testing.assert_allclose(tb.boxes[0], [8, 10, 22, 30])
    assert not ta.has_masks
    with pytest.raises(SiamtrackError, match="expected 4 or 8"):
        ds.parse_groundtruth("1,2,3\n")


def test_coco128_skips_tiny_objects(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    _jpg(tmp_path / "images" / "000000000001.jpg", 100, 100)
    big, tiny = np.zeros((100, 100), np.uint8), np.zeros((100, 100), np.uint8)
    big[20:60, 10:50] = 255
    tiny[5, 5] = 255
    cv2.imwrite(str(tmp_path / "masks" / "000000000001_00.png"), big)
    cv2.imwrite(str(tmp_path / "masks" / "000000000001_01.png"), tiny)
    (tmp_path / "instances.txt").write_text(
        "image mask_index class_id class_name width height mask_pixels mask_fraction\n"
        "000000000001.jpg 0 0 person 100 100 1600 0.16\n"
        "000000000001.jpg 1 2 car 100 100 1 0.0001\n")
    (track,) = ds.coco128_tracks(tmp_path)
    assert track.name == "coco/000000000001_00" and len(track.frames) == 1
    np.testing.assert_array_equal(track.boxes[0], [10, 20, 40, 40])


def test_shared_train_data_reads():
    videos = need(SHARED / "train_data" / "videos")
    tracks = ds.davis_tracks(videos, sequences=["bmx-bumps", "bear"])
    assert {t.name for t in tracks} == {"bmx-bumps", "bear"}
    bmx = next(t for t in tracks if t.name == "bmx-bumps")
    assert len(bmx.frames) - bmx.valid.size == 8  # the README's 8 empty masks
    coco = ds.coco128_tracks(need(SHARED / "train_data" / "images" / "coco128-seg"))
    assert 300 < len(coco) < 929


def test_init_reads_a_bare_imagenet_resnet_into_the_sharp_backbone(tmp_path):
    from siamtrack.models import build_model
    from siamtrack.train.loop import RunConfig, init_model

    torch.manual_seed(0)
    resnet = build_model("siammask_sharp").features.features.state_dict()
    resnet = {k: v + 1.0 if v.is_floating_point() else v for k, v in resnet.items()}
    resnet["fc.weight"] = torch.zeros(1000, 2048)  # torchvision's classifier: not in the model, ignored
    torch.save(resnet, tmp_path / "resnet50.pth")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[model]\narch = "siammask_sharp"\ninit = "{(tmp_path / "resnet50.pth").as_posix()}"\n')
    model = init_model(RunConfig.load(cfg))
    torch.testing.assert_close(model.features.features.layer2[0].conv1.weight, resnet["layer2.0.conv1.weight"])
    torch.save({"x": torch.zeros(3)}, tmp_path / "other.pth")
    cfg.write_text(f'[model]\narch = "siammask_sharp"\ninit = "{(tmp_path / "other.pth").as_posix()}"\n')
    with pytest.raises(SiamtrackError, match="no tensor matches"):
        init_model(RunConfig.load(cfg))
    cfg.write_text('[model]\narch = "siammask_sharp"\ninit = "imagenet"\n')
    with pytest.raises(SiamtrackError, match="only bundled for siammask_lite"):
        init_model(RunConfig.load(cfg))


def test_davis_split_file_selects_the_train_sequences(tmp_path):
    for name in ("a", "b", "c"):
        _jpg(tmp_path / "JPEGImages" / "480p" / name / "00000.jpg")
        _palette_png(tmp_path / "Annotations" / "480p" / name / "00000.png", _two_objects(0))
    (tmp_path / "ImageSets" / "2017").mkdir(parents=True)
    (tmp_path / "ImageSets" / "2017" / "train.txt").write_text("a\nc\n")
    tracks = ds.davis_tracks(tmp_path, split="ImageSets/2017/train.txt")
    assert [t.name for t in tracks] == ["a/1", "c/1"]
    assert [t.name for t in ds.davis_tracks(tmp_path, split="ImageSets/2017/train.txt", exclude=["a"])] == ["c/1"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside pycocotools, numpy 2
def test_coco_json_instances_skip_crowds_and_small_objects(tmp_path):
    pytest.importorskip("pycocotools")
    _jpg(tmp_path / "train2017" / "1.jpg", 100, 120)
    poly = [20.0, 10.0, 80.0, 10.0, 80.0, 60.0, 20.0, 60.0]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 3000.0, "bbox": [20, 10, 60, 50],
         "segmentation": [poly]},
        {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 20.0, "bbox": [0, 0, 4, 5],
         "segmentation": [[0.0, 0.0, 4.0, 0.0, 4.0, 5.0, 0.0, 5.0]]},
        {"id": 3, "image_id": 1, "category_id": 1, "iscrowd": 1, "area": 3000.0, "bbox": [20, 10, 60, 50],
         "segmentation": [poly]},
    ]
    coco = {"images": [{"id": 1, "file_name": "1.jpg", "width": 120, "height": 100}], "annotations": anns,
            "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    (track,) = ds.coco_json_tracks(tmp_path / "instances.json", tmp_path / "train2017")
    assert track.name == "coco/1" and track.has_masks
    mask = ds.FrameCache().mask(track, 0)
    assert mask.shape == (100, 120) and set(np.unique(mask)) == {0, 255}
    x, y, w, h = ds.mask_box(mask)
    np.testing.assert_allclose([x, y, x + w, y + h], [20, 10, 80, 60], atol=1.5)
