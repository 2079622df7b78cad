"""``siamtrack eval``: DAVIS J/F and box benchmarks for siamtrack models and OpenCV baselines."""

from __future__ import annotations

import click

from siamtrack.commands._common import model_options, user_errors

TRACKERS = ["siammask", "opencv-mil", "opencv-csrt", "opencv-kcf"]


@click.group("eval")
def eval_group() -> None:
    """Measure a tracker the way the papers do.

    \b
    Examples:
      siamtrack eval davis path/to/DAVIS --model siammask-davis
      siamtrack eval davis path/to/DAVIS --pred my_masks/
      siamtrack eval boxes path/to/sequences --tracker opencv-mil --restart
    """


def _factory(tracker: str, model, checkpoint, preset, device, precision):
    from siamtrack.commands._common import make_tracker
    from siamtrack.eval.baselines import OpenCVTracker

    if tracker == "siammask":
        return lambda: make_tracker(model, checkpoint, preset, device, precision)
    return lambda: OpenCVTracker(tracker)


def _report(results: dict, out_dir, meta: dict, quiet: bool) -> None:
    from pathlib import Path

    from rich.table import Table

    from siamtrack.commands._common import console
    from siamtrack.eval.harness import summary_rows, write_results

    written = write_results(results, Path(out_dir), meta)
    if not quiet:
        header, rows = summary_rows(results)
        table = Table(title=f"{results['benchmark']}: {meta['tracker']} {meta.get('model', '')}")
        for h in header:
            table.add_column(h)
        for r in rows:
            table.add_row(*[c.replace("**", "") for c in r])
        console().print(table)
        if "fps" in results["summary"]:
            click.echo(f"fps: {results['summary']['fps']:.1f}")
    click.echo("results: " + ", ".join(str(p) for p in written))


def _meta(tracker: str, make) -> dict:
    meta = {"tracker": tracker}
    if tracker == "siammask":
        t = make()
        meta.update(model=t.model_name, arch=t.arch, preset=t.preset.to_dict(), precision=t.precision)
    return meta


@eval_group.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--sequences", default=None, help="Comma-separated sequence names (default: all).")
@click.option("--tracker", type=click.Choice(TRACKERS), default="siammask", show_default=True)
@model_options
@click.option("--pred", type=click.Path(exists=True, file_okay=False), default=None,
              help="Score existing masks (<pred>/<seq>/<frame>.png, binary or palette) instead of tracking.")
@click.option("--out", default="runs/eval-davis", show_default=True, type=click.Path(file_okay=False))
@click.option("--max-frames", type=click.IntRange(min=3), default=None, help="Use only the first N frames.")
@click.option("--quiet", is_flag=True)
@user_errors
def davis(root, sequences, tracker, model, checkpoint, preset, device, precision, pred, out, max_frames, quiet):
    """J and F (mean, recall, decay) on a DAVIS folder, initialised from the first-frame masks."""
    from siamtrack.eval.harness import evaluate_davis

    make = _factory(tracker, model, checkpoint, preset, device, precision)
    meta = {"tracker": "pred", "pred": str(pred)} if pred else _meta(tracker, make)
    seqs = [s.strip() for s in sequences.split(",")] if sequences else None
    say = None if quiet else (lambda name: click.echo(f"  {name}", err=True))
    results = evaluate_davis(root, make, sequences=seqs, pred_dir=pred, max_frames=max_frames, on_sequence=say)
    _report(results, out, meta, quiet)


@eval_group.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--sequences", default=None, help="Comma-separated sequence names (default: all).")
@click.option("--tracker", type=click.Choice(TRACKERS), default="siammask", show_default=True)
@model_options
@click.option("--restart", is_flag=True, help="VOT protocol: re-initialise 5 frames after each failure.")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Default: runs/eval-boxes[-restart].")
@click.option("--max-frames", type=click.IntRange(min=2), default=None)
@click.option("--quiet", is_flag=True)
@user_errors
def boxes(root, sequences, tracker, model, checkpoint, preset, device, precision, restart, out, max_frames, quiet):
    """Success AUC and precision@20 (one pass), or accuracy/robustness with --restart."""
    from siamtrack.eval.harness import evaluate_boxes

    make = _factory(tracker, model, checkpoint, preset, device, precision)
    seqs = [s.strip() for s in sequences.split(",")] if sequences else None
    say = None if quiet else (lambda name: click.echo(f"  {name}", err=True))
    results = evaluate_boxes(root, make, restart=restart, sequences=seqs, max_frames=max_frames, on_sequence=say)
    _report(results, out or ("runs/eval-boxes-restart" if restart else "runs/eval-boxes"), _meta(tracker, make), quiet)
