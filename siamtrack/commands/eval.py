"""``siamtrack eval``: DAVIS J/F and box benchmarks for siamtrack models, OpenCV baselines and peers."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import click

from siamtrack.choices import TRACKERS
from siamtrack.commands._common import executor_options, model_options, user_errors


@click.group("eval")
def eval_group() -> None:
    """Score a tracker the way the papers do (results.json, results.md, success.png).

    \b
    Examples:
      siamtrack eval davis path/to/DAVIS --split val --model siammask-davis --preset davis
      siamtrack eval davis path/to/DAVIS --pred my_masks/
      siamtrack eval boxes path/to/sequences --tracker opencv-mil --restart
      siamtrack eval boxes path/to/sequences --tracker opencv-nano --threads 2
      siamtrack eval davis path/to/DAVIS --split val --workers 4

    With --workers N the sequences are tracked N at a time (worker processes, or Ray actors with
    --executor ray); the scores are the same as with one.

    --tracker opencv-nano / opencv-vit run OpenCV's learned trackers (NanoTrack v2, VitTrack) on their
    registry ONNX files (`siamtrack weights download opencv-nano`); like every OpenCV tracker they give
    boxes only, so `eval davis` scores their filled box as the mask. `eval davis` also reports each
    tracker's box success AUC against the bounding boxes of the ground-truth masks.
    """


def _tracker(name: str, model, checkpoint, preset, device, precision, backend="torch"):
    """The tracker to score: a SiamMask model from the usual options, or an OpenCV baseline or peer
    (module-level, so that worker processes can build it from the same arguments)."""
    if name == "siammask":
        from siamtrack.commands._common import make_tracker

        return make_tracker(model, checkpoint, preset, device, precision, backend=backend)
    from siamtrack.eval.baselines import OpenCVTracker

    return OpenCVTracker(name)


def _executor(parallel: dict, tracker_name: str, model, checkpoint, preset, device, precision, backend):
    import functools

    from siamtrack.commands._common import make_executor

    factory = functools.partial(_tracker, tracker_name, model, checkpoint, preset, device, precision, backend)
    return make_executor(parallel, factory, device)


def _progress(quiet: bool):
    if quiet:
        return None
    return lambda name, n: click.echo(f"  {name} ({n} frames)", err=True)


@contextlib.contextmanager
def _results_dir(out: str | None, default_name: str) -> Iterator[Any]:
    """The results folder, created before the evaluation, so that an unwritable one fails in
    seconds rather than after hours of tracking; removed again if the evaluation fails and
    the folder is new and still empty."""
    from pathlib import Path

    from siamtrack.runs import OutDir

    existed = out is not None and Path(out).exists()
    path = OutDir(Path(out) if out else None, default_name, overwrite=True).create()
    try:
        yield path
    except BaseException:
        if not existed and not any(path.iterdir()):
            path.rmdir()
        raise


def _finite(value: Any, where: str, bad: list[str]) -> Any:
    """``value`` with every NaN or infinity replaced by None (JSON null), their places listed in ``bad``."""
    if isinstance(value, float) and not math.isfinite(value):
        bad.append(where)
        return None
    if isinstance(value, dict):
        return {k: _finite(v, f"{where}.{k}" if where else str(k), bad) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v, f"{where}[{i}]", bad) for i, v in enumerate(value)]
    return value


def _report(results: dict[str, Any], out_dir: Any, quiet: bool) -> None:
    from siamtrack.eval.harness import box_only_note, summary_rows, write_results

    bad: list[str] = []
    results = _finite(results, "", bad)
    written, notes = write_results(results, out_dir)
    if bad:
        notes.append(f"{len(bad)} value(s) were not finite and are written as null (first: {bad[0]})")
    if not quiet:
        from rich.table import Table

        from siamtrack.commands._common import console

        meta = results["meta"]
        header, rows = summary_rows(results)
        model = f" ({meta['model']})" if meta.get("model") and meta["model"] != meta["tracker"] else ""
        table = Table(title=f"{results['benchmark']}: {meta['tracker']}{model}")
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i == 0 else "right")
        for i, row in enumerate(rows):
            table.add_row(*row, end_section=i == len(rows) - 2)
        console().print(table)
        if box_only_note(results):
            click.echo(box_only_note(results))
        if "eao" in results["summary"]:
            from siamtrack.eval.harness import eao_line

            click.echo(eao_line(results["summary"]))
        if meta.get("fps"):
            click.echo(f"speed: {meta['fps']:.1f} frames/s ({meta['tracked_frames']} frames tracked)")
    for note in notes:
        click.echo(f"Note: {note}", err=True)
    click.echo("results: " + ", ".join(str(p) for p in written))


def _names(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _interval(ctx: click.Context, param: click.Parameter, text: str | None) -> tuple[int, int] | None:
    """``LO,HI``: whole sequence lengths, 1 <= LO <= HI."""
    if text is None:
        return None
    try:
        lo, hi = (int(p) for p in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected LO,HI (two whole numbers), got {text!r}") from None
    if not 1 <= lo <= hi:
        raise click.BadParameter(f"expected 1 <= LO <= HI, got {lo},{hi}")
    return lo, hi


@eval_group.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--sequences", default=None, metavar="A,B,...", help="Comma-separated sequence names (default: all).")
@click.option("--split", default=None, metavar="NAME",
              help="Sequences of ImageSets/{2016,2017,480p}/NAME.txt, e.g. val (DAVIS-2016 val: 20 sequences).")
@click.option("--tracker", "tracker_name", type=click.Choice(TRACKERS), default="siammask", show_default=True,
              help="siammask, or an OpenCV baseline or peer, scored with its filled box as the mask.")
@model_options
@executor_options
@click.option("--pred", type=click.Path(exists=True, file_okay=False), default=None,
              help="Score existing masks (<pred>/<seq>/<frame>.png, 0/255 or palette) instead of tracking.")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Output folder (default: runs/eval-davis, numbered).")
@click.option("--max-frames", type=click.IntRange(min=3), default=None, help="Only the first N frames per sequence.")
@click.option("--save-masks", type=click.Path(file_okay=False), default=None,
              help="Also write the tracked masks as DAVIS palette PNGs (<dir>/<seq>/<frame>.png).")
@click.option("--quiet", is_flag=True)
@user_errors
def davis(root: str, sequences: str | None, split: str | None, tracker_name: str, model, checkpoint, preset, device,
          precision, backend, parallel: dict, pred: str | None, out: str | None, max_frames: int | None,
          save_masks: str | None, quiet: bool) -> None:
    """J and F (mean, recall, decay) on a DAVIS folder (JPEGImages/480p, Annotations/480p).

    Each sequence starts from the bounding box of its first-frame mask (one per object);
    the first and last frames are not scored, as in the official DAVIS evaluation.
    """
    from siamtrack.eval.harness import evaluate_davis, split_sequences

    if pred and save_masks:
        raise click.UsageError("--save-masks needs tracking; it cannot be used with --pred")
    if split and sequences:
        raise click.UsageError("give --split or --sequences, not both")
    if pred and (parallel["workers"] > 1 or parallel["executor"] != "local"):
        raise click.UsageError("--workers and --executor are for tracking; --pred only scores")
    names = split_sequences(root, split) if split else _names(sequences)
    with contextlib.ExitStack() as stack:
        executor = None if pred else stack.enter_context(
            _executor(parallel, tracker_name, model, checkpoint, preset, device, precision, backend))
        out_dir = stack.enter_context(_results_dir(out, "eval-davis"))
        results = evaluate_davis(root, pred_dir=pred, sequences=names, max_frames=max_frames, save_masks=save_masks,
                                 on_sequence=_progress(quiet), executor=executor)
        _report(results, out_dir, quiet)


@eval_group.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--sequences", default=None, metavar="A,B,...", help="Comma-separated sequence names (default: all).")
@click.option("--tracker", "tracker_name", type=click.Choice(TRACKERS), default="siammask", show_default=True)
@model_options
@executor_options
@click.option("--restart", is_flag=True, help="VOT protocol: re-initialise 5 frames after each failure (zero overlap).")
@click.option("--eao-interval", default=None, metavar="LO,HI", callback=_interval,
              help="With --restart: the sequence lengths EAO averages (default: 100,356, as VOT-2018).")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Output folder (default: runs/eval-boxes or runs/eval-boxes-restart, numbered).")
@click.option("--max-frames", type=click.IntRange(min=2), default=None, help="Only the first N frames per sequence.")
@click.option("--quiet", is_flag=True)
@user_errors
def boxes(root: str, sequences: str | None, tracker_name: str, model, checkpoint, preset, device, precision,
          backend, parallel: dict, restart: bool, eao_interval: tuple[int, int] | None, out: str | None,
          max_frames: int | None,
          quiet: bool) -> None:
    """Success AUC and precision at 20 px (one pass), or accuracy, failures and EAO with --restart.

    ROOT holds one folder per sequence: frames (in frames/, img/, color/ or the folder itself) and
    groundtruth.txt (or groundtruth_rect.txt) with x,y,w,h or 8-number polygons per line.
    """
    from siamtrack.eval.boxes import EAO_INTERVAL
    from siamtrack.eval.harness import evaluate_boxes

    if eao_interval and not restart:
        raise click.UsageError("--eao-interval needs --restart (EAO is a restart-protocol score)")
    with _executor(parallel, tracker_name, model, checkpoint, preset, device, precision, backend) as executor, \
            _results_dir(out, "eval-boxes-restart" if restart else "eval-boxes") as out_dir:
        results = evaluate_boxes(root, restart=restart, sequences=_names(sequences), max_frames=max_frames,
                                 eao_interval=eao_interval or EAO_INTERVAL, on_sequence=_progress(quiet),
                                 executor=executor)
        _report(results, out_dir, quiet)
