"""Schedule, freezing phases, resume guard and the CLI entry of the training loop (no training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from siamtrack.errors import SiamtrackError
from siamtrack.train.loop import (
    RunConfig,
    TrainConfig,
    _check_same_recipe,
    apply_phase,
    learning_rate,
    param_groups,
    phase,
    trunk_stages,
    val_frames,
)


def test_warmup_then_log_decay():
    cfg = TrainConfig(steps=1000, warmup_steps=100, warmup_start_lr=1e-3, base_lr=5e-3, end_lr=5e-4)
    assert learning_rate(0, cfg) == pytest.approx(1e-3)
    assert learning_rate(50, cfg) == pytest.approx(math.sqrt(1e-3 * 5e-3))  # geometric warm-up
    assert learning_rate(100, cfg) == pytest.approx(5e-3)
    assert learning_rate(550, cfg) == pytest.approx(math.sqrt(5e-3 * 5e-4))  # log decay
    assert learning_rate(1000, cfg) == pytest.approx(5e-4)
    lrs = [learning_rate(s, cfg) for s in range(100, 1000)]
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))


def test_phases_freeze_the_early_trunk_and_keep_its_batchnorm_in_eval_mode():
    from siamtrack.models import build_model

    model = build_model("siammask_lite", channels=32)
    cfg = TrainConfig(freeze_trunk_until=10, trainable_trunk_from=6, refine_only_from=20, trunk_lr_mult=0.1)
    assert [phase(s, cfg) for s in (0, 9, 10, 19, 20)] == ["heads", "heads", "trunk", "trunk", "refine"]
    stages = trunk_stages(model)

    def trains(module: nn.Module) -> bool:
        return any(p.requires_grad for p in module.parameters())

    def bn_modes(module: nn.Module) -> set[bool]:
        return {m.training for m in module.modules() if isinstance(m, nn.BatchNorm2d)}

    apply_phase(model, "heads", cfg)
    assert not any(trains(s) for s in stages) and bn_modes(nn.ModuleList(stages)) == {False}
    assert trains(model.refine_head) and model.refine_head.training
    apply_phase(model, "trunk", cfg)
    assert not any(trains(s) for s in stages[:6]) and all(trains(s) for s in stages[6:])
    assert bn_modes(nn.ModuleList(stages[:6])) == {False} and bn_modes(nn.ModuleList(stages[6:])) == {True}
    apply_phase(model, "refine", cfg)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"refine_head"}
    assert bn_modes(model.trunk) == {False} and model.refine_head.training
    groups = param_groups(model, cfg)
    assert [g["lr_mult"] for g in groups] == [1.0, 0.1]
    trunk_ids = {id(p) for s in stages for p in s.parameters()}
    assert {id(p) for p in groups[1]["params"]} == trunk_ids


def _config(tmp_path: Path, steps: int = 100, shift: float = 64.0, workers: int = 1, extra: str = "") -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f"""
[model]
arch = "siammask_lite"
[[data]]
type = "davis"
root = "videos"
[augment]
search_shift = {shift}
[train]
steps = {steps}
workers = {workers}
[val]
every = 10
""" + extra)
    return path


def test_resume_refuses_a_changed_recipe_but_allows_bookkeeping(tmp_path):
    saved = RunConfig.load(_config(tmp_path)).raw
    _check_same_recipe(saved, RunConfig.load(_config(tmp_path, workers=4)).raw, Path("last.pt"))
    with pytest.raises(SiamtrackError, match=r"\[train\]"):
        _check_same_recipe(saved, RunConfig.load(_config(tmp_path, steps=200)).raw, Path("last.pt"))
    with pytest.raises(SiamtrackError, match=r"\[augment\]"):
        _check_same_recipe(saved, RunConfig.load(_config(tmp_path, shift=32.0)).raw, Path("last.pt"))


def test_validation_frames_follow_the_davis_protocol_at_every_frame_step():
    assert val_frames(6, 0) == [0, 1, 2, 3, 4]  # init on 0, score 1..4: the last frame is not scored
    assert val_frames(10, 2, max_frames=7) == [2, 3, 4, 5]
    assert val_frames(10, 0, step=3) == [0, 3, 6]  # 0, 3, 6, 9 tracked; 9 is the last
    assert val_frames(10, 1, step=4) == [1, 5]
    assert val_frames(1, 0) == [0] and val_frames(2, 0, step=3) == [0]


def test_config_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nbatch = 3\n")
    with pytest.raises(SiamtrackError, match="unknown \\[train\\] option"):
        RunConfig.load(bad)
    bad.write_text("[train\n")
    with pytest.raises(SiamtrackError, match="cannot read training config"):
        RunConfig.load(bad)
    bad.write_text("[val]\nframe_step = 0\n")
    with pytest.raises(SiamtrackError, match="frame_step must be 1 or more"):
        RunConfig.load(bad)


def test_cli_reports_a_missing_dataset_as_one_line(tmp_path, monkeypatch, capsys):
    from siamtrack.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(_config(tmp_path)), "--out", str(tmp_path / "run"), "--quiet"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "videos does not exist" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_checkpoint_holds_only_what_weights_only_loading_accepts(tmp_path):
    from siamtrack.models import build_model
    from siamtrack.train.loop import checkpoint_payload, save_atomic

    run = RunConfig.load(_config(tmp_path))
    model = build_model("siammask_lite", channels=32)
    save_atomic(checkpoint_payload(model, run, 7), tmp_path / "last.pt")
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["arch"] == "siammask_lite" and ck["step"] == 7 and set(ck["state_dict"]) == set(model.state_dict())


@pytest.mark.parametrize("name", ["siammask-lite.toml", "siammask-lite-v1.toml", "siammask-lite-v1-lite1.toml",
                                  "siammask-sharp.toml", "siammask-nano.toml"])
def test_shipped_recipes_are_valid(name):
    from siamtrack.presets import Preset
    from siamtrack.train.datasets import DATASET_READERS

    run = RunConfig.load(Path(__file__).resolve().parents[1] / "configs" / name)
    cfg = run.train
    assert all(d["type"] in DATASET_READERS for d in run.data)
    assert cfg.warmup_steps < cfg.steps and cfg.freeze_trunk_until < cfg.steps
    assert cfg.refine_only_from is None or cfg.freeze_trunk_until < cfg.refine_only_from < cfg.steps
    assert cfg.batch_size % cfg.accumulate == 0
    Preset.from_dict(run.preset)  # the tracker can build the stored preset
    held_back = set(run.val.sequences)
    assert not held_back & {s for d in run.data for s in d.get("sequences", [])}
    assert held_back <= {s for d in run.data for s in d.get("exclude", [])} or not held_back


@pytest.mark.slow
def test_two_steps_write_a_loadable_checkpoint_and_a_validation_line(tmp_path):
    import json

    from siamtrack.train.loop import train
    from siamtrack.weights.loading import load_checkpoint
    from tests.conftest import SHARED, need

    videos = need(SHARED / "train_data" / "videos")
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(f"""
[model]
arch = "siammask_lite"
channels = 32
init = "none"
[[data]]
type = "davis"
root = "{videos.as_posix()}"
sequences = ["bear", "boat"]
frame_range = 2
[train]
batch_size = 2
steps = 2
workers = 0
log_every = 1
[val]
root = "{videos.as_posix()}"
sequences = ["hike"]
every = 2
max_frames = 4
pairs = 4
[preset]
name = "lite"
penalty_k = 0.04
window_influence = 0.4
lr = 1.0
seg_thr = 0.35
""")
    ckpt = train(cfg, tmp_path / "run", progress=False)
    lines = [json.loads(s) for s in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == [1, 2]
    (val,) = [r for r in lines if "val_J" in r]
    assert val["step"] == 2 and set(val["val"]) == {"hike"} and 0.0 <= val["val_J"] <= 1.0
    assert val["pair_loss"] > 0 and {"pair_cls", "pair_loc", "pair_mask", "pair_mask_iou"} <= set(val)
    loaded = load_checkpoint(ckpt)
    assert loaded.arch == "siammask_lite" and loaded.preset["name"] == "lite"
    state = torch.load(tmp_path / "run" / "last.optim.pt", weights_only=True)
    assert state["step"] == 2 and state["best"] == {"val_J": pytest.approx(val["val_J"], abs=1e-4), "step": 2}
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert best["step"] == 2 and all(torch.equal(best["state_dict"][k], v)
                                     for k, v in torch.load(ckpt, weights_only=True)["state_dict"].items())


def test_optimizer_state_is_stored_in_bf16_and_restores_fp32_buffers():
    from siamtrack.train.loop import compact_state

    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(64, 64))
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    (w ** 2).sum().backward()
    opt.step()
    full = opt.state_dict()
    small = compact_state(full)
    assert small["state"][0]["momentum_buffer"].dtype == torch.bfloat16
    assert full["state"][0]["momentum_buffer"].dtype == torch.float32  # the live state is untouched
    fresh = torch.optim.SGD([torch.nn.Parameter(w.detach().clone())], lr=0.1, momentum=0.9)
    fresh.load_state_dict(small)
    restored = fresh.state_dict()["state"][0]["momentum_buffer"]
    assert restored.dtype == torch.float32
    torch.testing.assert_close(restored, full["state"][0]["momentum_buffer"], rtol=8e-3, atol=1e-6)


def test_resume_trims_log_lines_past_the_checkpoint(tmp_path):
    from siamtrack.train.loop import _trim_log

    log = tmp_path / "train_log.jsonl"
    rows = [{"step": 10, "loss": 1.0}, {"step": 20, "val_J": 0.5}, {"step": 30, "loss": 0.5}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _trim_log(log, 20)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [10, 20]
    _trim_log(tmp_path / "absent.jsonl", 20)
    assert not (tmp_path / "absent.jsonl").exists()


STAGE = "[[augment_stage]]\nfrom_step = {}\nelastic = 0.5\n"


def test_augment_stages_override_the_base_from_their_step(tmp_path):
    run = RunConfig.load(_config(tmp_path, extra=STAGE.format(50)))
    ((start, aug),) = run.augment_stages
    assert start == 50 and aug.elastic == 0.5 and aug.search_shift == run.augment.search_shift == 64.0
    with pytest.raises(SiamtrackError, match="from_step"):
        RunConfig.load(_config(tmp_path, extra="[[augment_stage]]\nelastic = 0.5\n"))
    with pytest.raises(SiamtrackError, match="augment_stage"):
        RunConfig.load(_config(tmp_path, extra=STAGE.format(50) + "sharpness = 1\n"))


def test_resume_accepts_augment_stages_that_start_after_the_checkpoint_only(tmp_path):
    saved = RunConfig.load(_config(tmp_path)).raw
    _check_same_recipe(saved, RunConfig.load(_config(tmp_path, extra=STAGE.format(50))).raw, Path("last.pt"), 50)
    with pytest.raises(SiamtrackError, match="augment_stage"):
        _check_same_recipe(saved, RunConfig.load(_config(tmp_path, extra=STAGE.format(40))).raw, Path("last.pt"), 50)
    staged = RunConfig.load(_config(tmp_path, extra=STAGE.format(40))).raw
    _check_same_recipe(staged, RunConfig.load(_config(tmp_path, extra=STAGE.format(40))).raw, Path("last.pt"), 60)
