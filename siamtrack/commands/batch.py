"""``siamtrack batch``: every video of a manifest into run's outputs, on local processes or Ray."""

from __future__ import annotations

from typing import Any

import click

from siamtrack.commands._common import executor_options, lost_options, model_options, user_errors

TABLE_ROWS = 40  # a longer batch lists only the entries that did not finish (batch.json has them all)


@click.command()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: <out>/<name>/ per entry and <out>/batch.json.")
@executor_options
@model_options
@lost_options
@click.option("--no-video", is_flag=True, help="Do not write annotated.mp4.")
@click.option("--no-masks", is_flag=True, help="Do not write mask PNGs.")
@click.option("--quiet", is_flag=True, help="No progress bar or table (failures are still listed).")
@user_errors
def batch(manifest: str, out: str, parallel: dict, model: str | None, checkpoint: str | None, preset: str | None,
          device: str, precision: str, backend: str, lost: dict, no_video: bool, no_masks: bool, quiet: bool) -> None:
    """Track every entry of MANIFEST (JSON Lines) into OUT/<name>/, as `siamtrack run` would.

    \b
    Each line: {"source": "clip.mp4", "bbox": [[x, y, w, h], ...]}, optionally with
    "name" (the output folder), "start", "max_frames" and "keyframes" (a corrections file,
    see run --keyframes). Paths are relative to the manifest's folder.

    \b
    Examples:
      siamtrack batch clips.jsonl --out results --workers 2
      siamtrack batch clips.jsonl --out /shared/results --executor ray --ray-address auto --workers 32

    OUT/batch.json lists every entry: done, skipped, failed (with the error), interrupted or
    pending. Rerunning the same command skips the entries already done. Ctrl-C stops
    cleanly: running entries keep the frames done, the summary is written. Exit code 1 when
    an entry failed.
    """
    import functools
    import time
    from pathlib import Path

    from siamtrack.batch import read_manifest, run_batch
    from siamtrack.commands import _common

    entries = read_manifest(manifest)
    t0 = time.perf_counter()
    factory = functools.partial(_common.make_tracker, model, checkpoint, preset, device, precision, lost, backend)
    options = {"model": model, "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None, "preset": preset,
               "device": device, "precision": precision, "backend": backend, "lost": lost}
    with _common.make_executor(parallel, factory, device) as executor, _Progress(len(entries), quiet) as progress:
        meta = {"manifest": str(Path(manifest).resolve()),
                "executor": {"kind": parallel["executor"], "workers": parallel["workers"],
                             "threads": getattr(executor, "threads", None)}}
        result = run_batch(entries, out, executor, video=not no_video, masks=not no_masks, options=options,
                           meta=meta, on_record=progress.record, since=t0)
    _report(result, quiet)
    if result.exit_code:
        raise SystemExit(result.exit_code)


class _Progress:
    """One bar for the batch: entries finished (skipped ones included) and frames per second."""

    def __init__(self, total: int, quiet: bool) -> None:
        import time

        self.quiet = quiet
        self.frames = 0
        self.t0 = time.perf_counter()
        if not quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            from siamtrack.commands._common import console

            self.bar = Progress(TextColumn("batch"), BarColumn(), MofNCompleteColumn(), TextColumn("entries"),
                                TextColumn("{task.fields[fps]} frames/s"), TextColumn("{task.fields[failed]}"),
                                TimeElapsedColumn(), console=console(stderr=True))
            self.task = self.bar.add_task("batch", total=total, fps="-", failed="")
            self.failed = 0

    def __enter__(self) -> _Progress:
        if not self.quiet:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.quiet:
            self.bar.__exit__(*exc)

    def record(self, record: Any) -> None:
        import time

        if record.status == "failed" and self.quiet:
            click.echo(f"failed: {record.name}: {record.error}", err=True)
        if self.quiet:
            return
        if record.status in ("done", "interrupted"):
            self.frames += record.frames
        self.failed += record.status == "failed"
        fps = self.frames / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(self.task, advance=record.status != "pending", fps=f"{fps:.1f}",
                        failed=f"{self.failed} failed" if self.failed else "")


def _report(result: Any, quiet: bool) -> None:
    """The final table (every entry, or only the unfinished ones of a long batch) and the totals."""
    if not quiet:
        from rich.table import Table

        from siamtrack.commands._common import console

        rows = result.records
        if len(rows) > TABLE_ROWS:
            rows = [r for r in rows if r.status not in ("done", "skipped")]
        table = Table(title="siamtrack batch" + (" (interrupted)" if result.interrupted else ""))
        for col in ("entry", "status", "frames", "fps", "seconds", "error"):
            table.add_column(col, justify="right" if col in ("frames", "fps", "seconds") else "left")
        for r in rows:
            table.add_row(r.name, r.status, str(r.frames), f"{r.fps:.1f}", f"{r.seconds:.1f}", r.error or "")
        counts = ", ".join(f"{result.count(s)} {s}" for s in ("done", "skipped", "failed", "interrupted", "pending")
                           if result.count(s))
        table.caption = (f"{counts}; {result.frames} frames in {result.seconds:.1f} s, {result.fps:.1f} frames/s"
                         + (f" ({len(result.records) - len(rows)} finished entries not listed)"
                            if len(rows) < len(result.records) else ""))
        console(stderr=True).print(table)
        for r in result.records:
            for message in r.warnings:
                click.echo(f"Warning: {r.name}: {message}", err=True)
    click.echo(str(result.summary))
    if result.interrupted:
        click.echo(f"Interrupted: {result.summary} lists the entries done; rerun the command to finish.", err=True)
    elif result.count("failed"):
        click.echo(f"Error: {result.count('failed')} of {len(result.records)} entries failed "
                   f"(see {result.summary})", err=True)
