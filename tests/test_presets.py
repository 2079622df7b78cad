"""Preset names are distinct, and a run records the name and the values it tracked with."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
import torch

from siamtrack import weights
from siamtrack.api import from_checkpoint, from_pretrained
from siamtrack.cli import main
from siamtrack.io import synthetic
from siamtrack.models import build_model
from siamtrack.presets import DEFAULT_PRESET, PRESETS, Preset

TUNED = {"penalty_k": 0.1, "window_influence": 0.3, "lr": 0.6, "seg_thr": 0.45}


def _lite_checkpoint(path, **meta) -> str:
    torch.manual_seed(0)
    torch.save({"arch": "siammask_lite", "config": {"channels": 16},
                "state_dict": build_model("siammask_lite", channels=16).state_dict(), **meta}, path)
    return str(path)


def test_every_builtin_preset_has_its_own_name():
    assert list(PRESETS) == ["davis", "vot", "vot18", "pysot", "lite-untuned", "nanotrack-v3", "siammask-nano",
                             "nanotrack-v2", "nanotrack-opencv"]
    assert all(p.name == name for name, p in PRESETS.items())
    assert DEFAULT_PRESET == {"siammask_sharp": "davis", "siammask_lite": "lite-untuned",
                              "nanotrack_v3": "nanotrack-v3", "nanotrack_v2": "nanotrack-v2",
                              "siammask_nano": "siammask-nano"}
    # siammask-nano tracks with NanoTrack v3's values (its box branch); only the mask's use differs
    nano, v3 = PRESETS["siammask-nano"].to_dict(), PRESETS["nanotrack-v3"].to_dict()
    assert {k for k in nano if nano[k] != v3[k]} == {"name", "mask_box"} and nano["mask_box"] == 0.85
    assert PRESETS["lite-untuned"].to_dict() == {**PRESETS["davis"].to_dict(), "name": "lite-untuned"}
    assert weights.get_entry("siammask-lite").preset == "lite-untuned"


def test_a_checkpoint_preset_is_named_after_its_model(tmp_path):
    stored = {"name": "lite", **TUNED}
    tuned = _lite_checkpoint(tmp_path / "mine.pt", preset=stored, preset_tuning={"score": 0.5})
    assert from_checkpoint(tuned, device="cpu").preset == Preset("mine-tuned", **TUNED)
    assert from_checkpoint(tuned, device="cpu", model_name="v2").preset.name == "v2-tuned"
    untuned = _lite_checkpoint(tmp_path / "plain.pt", preset=stored)
    assert from_checkpoint(untuned, device="cpu").preset == Preset("plain-checkpoint", **TUNED)
    bare = _lite_checkpoint(tmp_path / "bare.pt")
    assert from_checkpoint(bare, device="cpu").preset == PRESETS["lite-untuned"]
    assert from_checkpoint(tuned, preset="vot", device="cpu").preset == PRESETS["vot"]


def test_the_shipped_model_tracks_with_its_tuned_preset():
    if not weights.is_present("siammask-lite"):
        pytest.skip("shipped weights not present")
    tracker = from_pretrained("siammask-lite", device="cpu", precision="fp32")
    assert tracker.preset == Preset("siammask-lite-tuned", penalty_k=0.04, window_influence=0.4, lr=0.3, seg_thr=0.55)


def test_tracks_json_records_the_preset_name_and_values(tmp_path):
    synthetic.make_clip(tmp_path / "clip", n_frames=4, size=(160, 120))
    ckpt = _lite_checkpoint(tmp_path / "mine.pt", preset={"name": "lite", **TUNED}, preset_tuning={})
    out = tmp_path / "run"
    main(["run", str(tmp_path / "clip" / "clip.mp4"), "--bbox", "40,30,50,40", "--checkpoint", ckpt,
          "--device", "cpu", "--precision", "fp32", "--out", str(out), "--quiet", "--no-video"])
    preset = json.loads((out / "tracks.json").read_text())["meta"]["preset"]
    lost_fields = ("lost", "found", "uncertain", "redetect")
    lost_defaults = {f.name: f.default for f in fields(Preset) if f.name.startswith(lost_fields)}
    assert preset == {"name": "mine-tuned", **TUNED, "context_amount": 0.5, "style": "official", **lost_defaults,
                      "mask_box": None}
    assert len(lost_defaults) == 10
