"""``siamtrack train``: train or fine-tune a SiamMask model from a TOML recipe."""

from __future__ import annotations

import click

from siamtrack.choices import DEVICES
from siamtrack.commands._common import check_device, user_errors


@click.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Run folder (checkpoints, train_log.jsonl). Default: runs/train-<config name>.")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt (same schedule, same pairs).")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default=None,
              help="Mixed precision (default: the config's).")
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Stop after this many steps (resume later with --resume).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def train(config: str, out_dir: str | None, resume: bool, device: str, precision: str | None,
          max_steps: int | None, quiet: bool) -> None:
    """Train on the datasets named in CONFIG and write checkpoints the tracker loads.

    \b
    Examples:
      siamtrack train configs/siammask-lite.toml --out runs/train-lite
      siamtrack train configs/siammask-lite.toml --out runs/train-lite --resume
      torchrun --nproc_per_node 2 -m siamtrack.cli train configs/siammask-sharp.toml --device cuda
    """
    from pathlib import Path

    check_device(device)  # before the recipe's data are looked for
    from siamtrack.train.loop import train as run_training

    out = Path(out_dir) if out_dir else Path("runs") / f"train-{Path(config).stem}"
    ckpt = run_training(config, out, resume=resume, device=device, precision=precision, max_steps=max_steps,
                        progress=not quiet)
    click.echo(f"checkpoint: {ckpt}")
