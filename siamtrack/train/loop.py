"""The training loop: config, schedule, checkpoints and resume, DDP, validation.

Reproducibility: pair ``i`` of the run is a pure function of (seed, i) and step ``s``
consumes pairs ``[s*B, (s+1)*B)``; the rank ``r`` of ``W`` processes takes its contiguous
share of each global batch. A resumed run restores the model, the optimizer and the
step, so it continues the same schedule on the same pairs.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from siamtrack.atomic import atomic_path
from siamtrack.errors import SiamtrackError
from siamtrack.eval.davis import region_j
from siamtrack.models import build_model
from siamtrack.train import datasets as ds
from siamtrack.train.losses import BOX_LOSSES, distill_loss, mask_iou, mask_loss, score_loss
from siamtrack.train.sampler import AugmentConfig, DatasetSpec, PairSampler
from siamtrack.train.targets import anchor_targets, grid_of, mask_windows, targets_for


@dataclass
class TrainConfig:
    batch_size: int = 16
    steps: int = 6000
    base_lr: float = 5e-3
    warmup_start_lr: float = 1e-3
    warmup_steps: int = 300
    end_lr: float = 5e-4
    momentum: float = 0.9
    weight_decay: float = 1e-4
    grad_clip: float = 10.0
    clip_per_module: bool = False  # clip each of the model's trained_modules() on its own norm
    freeze_trunk_until: int = 0  # trunk frozen before this step
    trainable_trunk_from: int = 5  # first trunk stage trained after that (see trunk_stages())
    trunk_lr_mult: float = 0.1
    refine_only_from: int | None = None  # stage 2: only the refine module trains
    loss_cls: float = 1.0
    loss_loc: float = 1.2
    loss_mask: float = 36.0
    loss_distill: float = 0.0  # keep trained box heads near a frozen copy of the starting model's
    max_mask_cells: int = 32
    accumulate: int = 1  # micro-batches per step and process (gradient accumulation)
    frozen_bn: bool = False  # keep every BatchNorm in eval mode (running statistics)
    workers: int = 1
    checkpoint_every: int = 200
    log_every: int = 10
    precision: str = "fp32"
    threads: int = 0
    compact_optimizer: bool = False  # optimizer state saved in bf16: half the bytes, resume no longer bit-exact


@dataclass
class ValConfig:
    root: str = ""
    sequences: list[str] = field(default_factory=list)
    every: int = 0
    max_frames: int = 20  # 0: every frame
    pairs: int = 0  # fixed pairs from the validation sequences scored with the training losses
    frame_step: int = 1  # track every Nth frame: N times the motion per frame (fast-motion check)


def _dataclass_from(cls, data: dict[str, Any], where: str):
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise SiamtrackError(f"unknown {where} option(s): {', '.join(sorted(unknown))}")
    return cls(**data)


@dataclass
class RunConfig:
    model: dict[str, Any]
    data: list[dict[str, Any]]
    train: TrainConfig
    augment: AugmentConfig
    val: ValConfig
    preset: dict[str, Any]
    augment_stages: list[tuple[int, AugmentConfig]] = field(default_factory=list)
    seed: int = 0
    neg_prob: float = 0.2
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SiamtrackError(f"{path}: cannot read training config ({exc})") from None
        sampler = raw.get("sampler", {})
        base = _dataclass_from(AugmentConfig, raw.get("augment", {}), "[augment]")
        val = _dataclass_from(ValConfig, raw.get("val", {}), "[val]")
        if val.frame_step < 1:
            raise SiamtrackError(f"{path}: [val] frame_step must be 1 or more, not {val.frame_step}")
        return cls(
            model=dict(raw.get("model", {"arch": "siammask_lite"})),
            data=list(raw.get("data", [])),
            train=_dataclass_from(TrainConfig, raw.get("train", {}), "[train]"),
            augment=base,
            val=val,
            augment_stages=_augment_stages(base, raw.get("augment_stage", [])),
            preset=dict(raw.get("preset", {})),
            seed=int(sampler.get("seed", 0)),
            neg_prob=float(sampler.get("neg_prob", 0.2)),
            raw=raw,
        )


def _augment_stages(base: AugmentConfig, stages: list[dict[str, Any]]) -> list[tuple[int, AugmentConfig]]:
    """``[[augment_stage]]`` tables: from step ``from_step`` on, the listed [augment] values change
    (each stage starts from [augment], not from the stage before)."""
    out = []
    for stage in stages:
        stage = dict(stage)
        if "from_step" not in stage:
            raise SiamtrackError("every [[augment_stage]] needs a from_step")
        start = int(stage.pop("from_step"))
        changed = _dataclass_from(AugmentConfig, {**asdict(base), **stage}, "[[augment_stage]]")
        out.append((start, changed))
    return sorted(out, key=lambda s: s[0])


def build_specs(data: list[dict[str, Any]]) -> list[DatasetSpec]:
    """Read every dataset of the config (paths relative to the working directory)."""
    if not data:
        raise SiamtrackError("the config lists no [[data]] sets")
    specs = []
    for entry in data:
        entry = dict(entry)
        kind = entry.pop("type")
        weight = float(entry.pop("weight", 1.0))
        frame_range = int(entry.pop("frame_range", 100))
        reader = ds.DATASET_READERS.get(kind)
        if reader is None:
            raise SiamtrackError(f"unknown dataset type {kind!r}; known: {', '.join(ds.DATASET_READERS)}")
        root = entry.get("root") or entry.get("annotations")
        if root and not Path(root).exists():
            raise SiamtrackError(f"dataset {kind}: {root} does not exist")
        specs.append(DatasetSpec(f"{kind}:{root}", reader(**entry), weight, frame_range))
    return specs


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Warm-up (geometric from warmup_start_lr to base_lr), then log decay to end_lr."""
    if step < cfg.warmup_steps:
        t = step / max(cfg.warmup_steps, 1)
        return cfg.warmup_start_lr * (cfg.base_lr / cfg.warmup_start_lr) ** t
    t = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
    return cfg.base_lr * (cfg.end_lr / cfg.base_lr) ** min(t, 1.0)


def phase(step: int, cfg: TrainConfig) -> str:
    if cfg.refine_only_from is not None and step >= cfg.refine_only_from:
        return "refine"
    return "heads" if step < cfg.freeze_trunk_until else "trunk"


def trunk_stages(model: nn.Module) -> list[nn.Module]:
    if hasattr(model, "trunk_stages"):
        return model.trunk_stages()
    f = model.features.features
    return [nn.ModuleList([f.conv1, f.bn1]), f.layer1, f.layer2, f.layer3]


def apply_phase(model: nn.Module, name: str, cfg: TrainConfig) -> None:
    """Set requires_grad and train/eval per phase; frozen BatchNorm stays in eval mode.

    A model with ``trained_modules`` decides itself what trains (siammask-nano: the mask branch
    on a frozen published box branch), in every phase, and with ``kept_statistics`` which of
    them keep their BatchNorm statistics.
    """
    if hasattr(model, "trained_modules"):
        model.requires_grad_(False)
        model.eval()
        for module in model.trained_modules():
            module.requires_grad_(True)
            module.train(not cfg.frozen_bn)
        for module in getattr(model, "kept_statistics", list)():
            for m in module.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return
    stages = trunk_stages(model)
    trunk_params = {id(p) for s in stages for p in s.parameters()}
    train_from = len(stages) if name == "heads" else cfg.trainable_trunk_from
    model.train()
    for p in model.parameters():
        p.requires_grad_(name != "refine" and id(p) not in trunk_params)
    for i, stage in enumerate(stages):
        trainable = name == "trunk" and i >= train_from
        for p in stage.parameters():
            p.requires_grad_(trainable)
        stage.train(trainable)
    if name == "refine":
        refine = model.refine_head if hasattr(model, "refine_head") else model.refine_model
        for p in refine.parameters():
            p.requires_grad_(True)
        model.eval()
        refine.train()
    if cfg.frozen_bn:
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    trunk = {id(p) for s in trunk_stages(model) for p in s.parameters()}
    heads = [p for p in model.parameters() if id(p) not in trunk]
    body = [p for p in model.parameters() if id(p) in trunk]
    return [{"params": heads, "lr_mult": 1.0}, {"params": body, "lr_mult": cfg.trunk_lr_mult}]


def clip_groups(model: nn.Module, cfg: TrainConfig) -> list[list[nn.Parameter]]:
    """The parameter sets whose gradient norms are clipped: all trainable ones together, or with
    ``clip_per_module`` each trained module's alone, so that one branch's large gradients (a mask
    loss, say) do not shrink another's steps through the shared norm."""
    if cfg.clip_per_module and hasattr(model, "trained_modules"):
        return [[p for p in m.parameters() if p.requires_grad] for m in model.trained_modules()]
    return [[p for p in model.parameters() if p.requires_grad]]


class PairDataset(torch.utils.data.Dataset):
    """Pair index -> tensors with targets (runs in DataLoader workers)."""

    def __init__(self, sampler: PairSampler, targets=anchor_targets) -> None:
        self.sampler = sampler
        self.targets = targets  # the head type's (``targets_for``)

    def __len__(self) -> int:
        return 1 << 62

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.sampler.pair(index)
        rng = np.random.default_rng((self.sampler.seed, index, 1))
        t = self.targets(pair.box, pair.negative, rng)
        has_mask = pair.mask is not None
        return {
            "template": torch.from_numpy(np.ascontiguousarray(pair.template)).permute(2, 0, 1),
            "search": torch.from_numpy(np.ascontiguousarray(pair.search)).permute(2, 0, 1),
            "labels": torch.from_numpy(t.labels),
            "deltas": torch.from_numpy(t.deltas),
            "delta_weight": torch.from_numpy(t.delta_weight),
            "mask_cells": torch.from_numpy(t.mask_cells & has_mask),
            "mask": torch.from_numpy(pair.mask if has_mask else np.zeros((255, 255), np.float32)),
        }


class StepBatches(torch.utils.data.Sampler):
    """This rank's micro-batches of each global batch, from ``start`` on.

    A global batch is cut into ``world * accumulate`` shards; rank ``r`` takes shards
    ``r*accumulate .. r*accumulate + accumulate - 1``. So one process accumulating two shards
    sees exactly what two processes see, one shard each.
    """

    def __init__(self, batch: int, start: int, steps: int, rank: int, world: int, accumulate: int = 1) -> None:
        self.batch, self.start, self.steps = batch, start, steps
        self.rank, self.world, self.accumulate = rank, world, accumulate

    def __iter__(self):
        per = self.batch // (self.world * self.accumulate)
        for step in range(self.start, self.steps):
            for m in range(self.accumulate):
                base = step * self.batch + (self.rank * self.accumulate + m) * per
                yield list(range(base, base + per))

    def __len__(self) -> int:
        return max(self.steps - self.start, 0) * self.accumulate


def compute_losses(model: nn.Module, batch: dict[str, torch.Tensor], cfg: TrainConfig, rng: np.random.Generator,
                   teacher: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The weighted training losses of one batch; ``teacher`` (a frozen copy of the starting model)
    adds the distillation term."""
    z, x = batch["template"].float(), batch["search"].float()
    kernels = model.template(z)
    search = model.backbone(x)
    cls, loc, feats = model.heads(search, kernels)
    l_cls = score_loss(cls, batch["labels"])
    l_loc = BOX_LOSSES[getattr(model, "head_type", "anchors")](loc, batch["deltas"], batch["delta_weight"])
    l_distill = cls.new_zeros((), dtype=torch.float32)
    if teacher is not None:
        with torch.no_grad():
            t_cls, t_loc, _ = teacher.heads(search, teacher.template(z))
        l_distill = distill_loss(cls, loc, t_cls, t_loc, grid_of(model)[1])
    cells = batch["mask_cells"].nonzero()
    if cells.shape[0] > cfg.max_mask_cells:
        keep = np.sort(rng.choice(cells.shape[0], size=cfg.max_mask_cells, replace=False))
        cells = cells[torch.from_numpy(keep)]
    b_idx, flat = cells[:, 0], cells[:, 1]
    size, stride = grid_of(model)
    rows, cols = flat // size, flat % size
    if cells.shape[0]:
        logits = model.refine(feats, rows, cols, b_idx)
        target = mask_windows(batch["mask"], b_idx, rows, cols, size, stride)
    else:
        logits = cls.new_zeros((0, 127, 127))
        target = logits
    l_mask = mask_loss(logits, target)
    total = cfg.loss_cls * l_cls + cfg.loss_loc * l_loc + cfg.loss_mask * l_mask + cfg.loss_distill * l_distill
    # Keep every trainable parameter in the graph (DDP needs all of them to get a gradient).
    total = total + 0.0 * sum(p.sum() for p in model.parameters() if p.requires_grad)
    return {"loss": total, "cls": l_cls, "loc": l_loc, "mask": l_mask, "distill": l_distill,
            "mask_iou": mask_iou(logits.detach(), target)}


class TrainStep(nn.Module):
    """The model with its losses as ``forward``, so DistributedDataParallel can wrap it."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, teacher: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.teacher = [teacher]  # a list: not a submodule, so DDP and the optimizer never see it

    def forward(self, batch: dict[str, torch.Tensor], rng: np.random.Generator) -> dict[str, torch.Tensor]:
        return compute_losses(self.model, batch, self.cfg, rng, self.teacher[0])


def save_atomic(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def compact_state(state: dict[str, Any]) -> dict[str, Any]:
    """The optimizer state with its float buffers in bf16: half the bytes of a resumable run, and
    ``Optimizer.load_state_dict`` casts them back to each parameter's dtype."""
    def shrink(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.to(torch.bfloat16)
        return value

    return {**state, "state": {k: {n: shrink(v) for n, v in per.items()} for k, per in state["state"].items()}}


def checkpoint_payload(model: nn.Module, run: RunConfig, step: int) -> dict[str, Any]:
    """What the tracker loads: weights plus arch, model config and tuned preset."""
    cfg = {k: v for k, v in run.model.items() if k not in ("arch", "init")}
    return {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "arch": run.model.get("arch", "siammask_lite"), "config": cfg, "preset": run.preset or None,
            "step": step, "train_config": json.loads(json.dumps(run.raw))}


def init_model(run: RunConfig, *, load_init: bool = True) -> nn.Module:
    """Build the model and load its starting weights (``[model] init``).

    ``imagenet`` is the bundled Lite0 trunk for siammask_lite; a path loads every tensor whose
    name and shape match, either a SiamMask checkpoint or a bare ImageNet ResNet-50 (torchvision
    names, as the official release's ``resnet.model``), whose keys are read as the backbone's.
    ``load_init=False`` skips them: a resumed run overwrites every weight from its checkpoint, so
    it must not need the starting weights' file (or package) on the machine it resumes on.
    """
    arch = run.model.get("arch", "siammask_lite")
    cfg = {k: v for k, v in run.model.items() if k not in ("arch", "init")}
    model = build_model(arch, **cfg)
    init = run.model.get("init", "imagenet") if load_init else "none"
    if init == "imagenet":
        if arch != "siammask_lite":
            raise SiamtrackError(f"[model] init = 'imagenet' is only bundled for siammask_lite; for {arch} "
                                 "give the path of an ImageNet ResNet-50 checkpoint")
        from siamtrack.models.lite import load_imagenet_trunk

        load_imagenet_trunk(model)
    elif init not in ("none", ""):
        from siamtrack.weights.loading import extract_state_dict, read_checkpoint

        state, _ = extract_state_dict(read_checkpoint(init), str(init))
        own = model.state_dict()
        if not any(k in own for k in state):
            state = {f"features.features.{k}": v for k, v in state.items()}
        picked = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
        if not picked:
            raise SiamtrackError(f"{init}: no tensor matches the {arch} model (names or shapes differ)")
        model.load_state_dict(picked, strict=False)
        if hasattr(model, "after_init"):  # weights the model derives from the loaded ones
            model.after_init(set(picked))
    return model


def val_frames(length: int, first: int, max_frames: int = 0, step: int = 1) -> list[int]:
    """The frames validation tracks: the first annotated one, then every ``step``-th up to
    ``max_frames`` (0: the end), less the last, which the DAVIS protocol does not score."""
    end = min(length, max_frames or length)
    frames = list(range(first, end, step))
    return frames[:-1] if len(frames) > 1 else frames


def validate(model: nn.Module, run: RunConfig, device: torch.device | None = None) -> dict[str, float]:
    """Mean mask IoU (J) of the real tracker on held-back training sequences.

    Runs on the training device: under DDP the other ranks wait for rank 0 in the next
    gradient all-reduce, so validation must stay well inside the collective timeout.
    """
    import copy

    from siamtrack.api import build_tracker

    dev = device or torch.device("cpu")
    tracks = ds.davis_tracks(run.val.root, sequences=run.val.sequences)
    tracker = build_tracker(copy.deepcopy(model).to(dev).eval(), run.preset or "davis", device=str(dev),
                            precision="fp32")
    cache = ds.FrameCache(1 << 28)
    out = {}
    for track in tracks:
        first, *scored = val_frames(len(track.frames), int(track.valid[0]), run.val.max_frames, run.val.frame_step)
        tracker.init(cache.frame(track.frames[first]), tuple(track.boxes[first]))
        ious = []
        for i in scored:
            (res,) = tracker.track(cache.frame(track.frames[i]))
            ious.append(region_j(cache.mask(track, i) > 0, res.mask))
        out[track.name] = float(np.mean(ious)) if ious else 0.0
    return out


VAL_PAIR_AUGMENT = AugmentConfig(blur=0.0, gray=0.0, flip=0.0, color=0.0, affine=0.0, distractor=0.0)


def validate_pairs(model: nn.Module, run: RunConfig, device: torch.device | None = None) -> dict[str, float]:
    """Training losses on ``[val] pairs`` fixed pairs of the validation sequences (eval mode).

    The tracker's J on three short sequences moves with one lost frame; the mean loss over a few
    hundred pairs is a much steadier judge of whether a change helped.
    """
    dev = device or torch.device("cpu")
    tracks = ds.davis_tracks(run.val.root, sequences=run.val.sequences)
    spec = DatasetSpec("val", tracks, 1.0, 10)
    data = PairDataset(PairSampler([spec], neg_prob=run.neg_prob, augment=VAL_PAIR_AUGMENT, seed=7),
                       targets_for(model))
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    batch = 16
    with torch.no_grad():
        for first in range(0, run.val.pairs, batch):
            items = [data[i] for i in range(first, min(first + batch, run.val.pairs))]
            stacked = {k: torch.stack([item[k] for item in items]).to(dev) for k in items[0]}
            losses = compute_losses(model, stacked, run.train, np.random.default_rng((7, first)))
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + float(v) * len(items)
    model.train(was_training)
    return {f"pair_{k}": v / run.val.pairs for k, v in totals.items()}


# What may change between the chunks of one run: bookkeeping, not the pairs or the schedule.
RESUMABLE_CHANGES = {"train": {"workers", "checkpoint_every", "log_every", "threads", "precision",
                               "compact_optimizer"}, "val": None}


def _trim_log(path: Path, step: int) -> None:
    """Drop log lines past the checkpoint a run resumes from, so the log reads as one run."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
    if len(kept) != len(lines):
        path.write_text("".join(kept))


def _check_same_recipe(saved: dict[str, Any], current: dict[str, Any], ckpt: Path, step: int = 0) -> None:
    """Refuse to resume with a config whose data, augmentation or schedule differ from the run's:
    the resumed run would silently stop being the run it continues. Augmentation stages that start
    at or after the resumed step may be added or changed: the steps already trained did not use them."""
    def recipe(raw: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for section, value in raw.items():
            if section == "augment_stage":
                value = [stage for stage in value if int(stage.get("from_step", 0)) < step]
                if not value:
                    continue
            if section in RESUMABLE_CHANGES and RESUMABLE_CHANGES[section] is None:
                continue
            skip = RESUMABLE_CHANGES.get(section) or set()
            out[section] = {k: v for k, v in value.items() if k not in skip} if isinstance(value, dict) else value
        return out

    old, new = recipe(saved), recipe(current)
    if saved and old != new:
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        raise SiamtrackError(f"{ckpt}: the config's [{'], ['.join(changed)}] differ from the run being resumed; "
                             "restore them or train into a new --out folder")


def train(config_path: str | Path, out_dir: str | Path, *, resume: bool = False, device: str = "cpu",
          precision: str | None = None, max_steps: int | None = None, progress: bool = True) -> Path:
    """Run (or resume) a training run; returns the path of the last checkpoint."""
    from siamtrack.backends import resolve_device

    dev = resolve_device(device)
    run = RunConfig.load(config_path)
    cfg = run.train
    if precision:
        cfg.precision = precision
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if dev.type == "cpu" and cfg.precision == "fp16":
        raise SiamtrackError("fp16 training is for CUDA; on a CPU use bf16 (native bf16 CPUs) or fp32")
    if dev.type == "cpu" and cfg.precision == "bf16":
        from siamtrack.backends.engine import cpu_has_native_bf16

        if not cpu_has_native_bf16():
            raise SiamtrackError("this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 would be emulated "
                                 "and slower; use --precision fp32")
    if cfg.batch_size % (world * cfg.accumulate):
        raise SiamtrackError(f"batch_size {cfg.batch_size} is not divisible by {world} processes x "
                             f"{cfg.accumulate} accumulation steps")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt, optim_path, log_path = out / "last.pt", out / "last.optim.pt", out / "train_log.jsonl"
    best_path = out / "best.pt"

    resuming = resume and ckpt.is_file()
    torch.manual_seed(run.seed)
    model = init_model(run, load_init=not resuming).to(dev)
    teacher = None
    if cfg.loss_distill:  # the starting weights, frozen; a resumed run reloads them from [model] init
        teacher = init_model(run).to(dev).eval().requires_grad_(False)
    optimizer = torch.optim.SGD(param_groups(model, cfg), lr=cfg.base_lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(enabled=cfg.precision == "fp16")
    start, best = 0, {"val_J": -1.0, "step": 0}
    if resuming:
        saved = torch.load(ckpt, map_location=dev, weights_only=True)
        _check_same_recipe(saved.get("train_config", {}), run.raw, ckpt, int(saved.get("step", 0)))
        model.load_state_dict(saved["state_dict"])
        state = torch.load(optim_path, map_location=dev, weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        start = int(state["step"])
        best = state.get("best", best)
        if rank == 0:
            _trim_log(log_path, start)
    end = cfg.steps if max_steps is None else min(cfg.steps, start + max_steps)

    sampler = PairSampler(build_specs(run.data), neg_prob=run.neg_prob, augment=run.augment, seed=run.seed,
                          stages=[(step * cfg.batch_size, aug) for step, aug in run.augment_stages])
    loader = torch.utils.data.DataLoader(
        PairDataset(sampler, targets_for(model)),
        batch_sampler=StepBatches(cfg.batch_size, start, end, rank, world, cfg.accumulate),
        num_workers=cfg.workers, pin_memory=dev.type == "cuda", persistent_workers=False,
        prefetch_factor=4 if cfg.workers else None)

    is_main = rank == 0
    bar = _Progress(end, start) if (progress and is_main) else None
    current_phase, net = None, None
    t0, pairs = time.perf_counter(), 0
    amp = (torch.autocast(dev.type, dtype=torch.bfloat16) if cfg.precision == "bf16"
           else torch.autocast(dev.type, dtype=torch.float16) if cfg.precision == "fp16"
           else contextlib.nullcontext())
    step = start
    with (bar or contextlib.nullcontext()), open(log_path, "a") if is_main else contextlib.nullcontext() as log:
        batches = iter(loader)
        for step in range(start, end):
            name = phase(step, cfg)
            if name != current_phase:
                apply_phase(model, name, cfg)
                net = TrainStep(model, cfg, teacher)
                if world > 1:  # re-wrapped per phase: DDP registers the parameters that train
                    net = nn.parallel.DistributedDataParallel(net)
                current_phase = name
            lr = learning_rate(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_mult"]
            optimizer.zero_grad(set_to_none=True)
            totals: dict[str, float] = {}
            for m in range(cfg.accumulate):
                batch = {k: v.to(dev, non_blocking=True) for k, v in next(batches).items()}
                rng = np.random.default_rng((run.seed, step, rank * cfg.accumulate + m, 2))
                sync = world == 1 or m == cfg.accumulate - 1
                with contextlib.nullcontext() if sync else net.no_sync(), amp:
                    losses = net(batch, rng)
                    scaler.scale(losses["loss"] / cfg.accumulate).backward()
                for k, v in losses.items():
                    totals[k] = totals.get(k, 0.0) + float(v.detach()) / cfg.accumulate
            scaler.unscale_(optimizer)
            for params in clip_groups(model, cfg):
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            pairs += cfg.batch_size
            done = step + 1
            if is_main:
                values = totals
                rate = pairs / (time.perf_counter() - t0)
                if bar:
                    bar.update(done, values, rate)
                if done % cfg.log_every == 0 or done == end:
                    log.write(json.dumps({"step": done, "lr": lr, "phase": name, "pairs_per_s": round(rate, 2),
                                          **{k: round(v, 5) for k, v in values.items()}}) + "\n")
                    log.flush()
                if run.val.every and run.val.root and (done % run.val.every == 0 or done == cfg.steps):
                    scores = validate(model, run, dev)
                    val_j = float(np.mean(list(scores.values())))
                    record = {"step": done, "val_J": round(val_j, 4),
                              "val": {k: round(v, 4) for k, v in scores.items()}}
                    if run.val.pairs:
                        record.update({k: round(v, 5) for k, v in validate_pairs(model, run, dev).items()})
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    apply_phase(model, name, cfg)
                    if val_j > best["val_J"]:
                        best = {"val_J": val_j, "step": done}
                        save_atomic(checkpoint_payload(model, run, done), best_path)
                if done % cfg.checkpoint_every == 0 or done == end:
                    save_atomic(checkpoint_payload(model, run, done), ckpt)
                    state = optimizer.state_dict()
                    save_atomic({"optimizer": compact_state(state) if cfg.compact_optimizer else state,
                                 "scaler": scaler.state_dict(), "step": done, "best": best}, optim_path)
    return ckpt


class _Progress:
    """A rich progress bar with the latest losses and throughput."""

    def __init__(self, total: int, start: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.fields[info]}"))
        self.task = self.progress.add_task("train", total=total, completed=start, info="")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, done: int, values: dict[str, float], rate: float) -> None:
        info = (f"loss {values['loss']:.3f} cls {values['cls']:.3f} loc {values['loc']:.3f} "
                f"mask {values['mask']:.3f} iou {values['mask_iou']:.2f} {rate:.1f} pairs/s")
        self.progress.update(self.task, completed=done, info=info)
