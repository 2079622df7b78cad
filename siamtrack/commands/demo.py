"""``siamtrack demo``: track a generated sample clip with the default model (no data, no network)."""

from __future__ import annotations

import click

from siamtrack.commands._common import model_options, user_errors


@click.command()
@model_options
@click.option("--clip-dir", type=click.Path(file_okay=False), default="runs/demo-clip", show_default=True,
              help="Where the generated clip and its ground truth are kept (made once).")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Output folder (default: a new numbered runs/demo folder).")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
@user_errors
def demo(model: str | None, checkpoint: str | None, preset: str | None, device: str, precision: str, backend: str,
         clip_dir: str, out: str | None, quiet: bool) -> None:
    """Generate the sample clip once, track its object from the known first box, print where the outputs are.

    \b
    Examples:
      siamtrack demo                          # what `make demo` runs
      siamtrack demo --model siammask-davis --preset davis
    """
    import json
    from pathlib import Path

    from siamtrack.commands._common import first_frame, make_tracker
    from siamtrack.commands.run import track_video
    from siamtrack.errors import SiamtrackError
    from siamtrack.io.sources import open_source
    from siamtrack.io.synthetic import make_clip
    from siamtrack.runs import RUN_OUTPUTS, OutDir

    clip = Path(clip_dir)
    truth = clip / "groundtruth.json"
    if not truth.is_file():
        if not quiet:
            click.echo(f"Generating the sample clip in {clip} ...", err=True)
        try:
            make_clip(clip)
        except OSError as exc:
            raise SiamtrackError(f"cannot write the sample clip to {clip} ({exc.strerror or exc})") from None
    gt = json.loads(truth.read_text())
    out_dir = OutDir(out, "demo", overwrite=False, owned=RUN_OUTPUTS)
    tracker = make_tracker(model, checkpoint, preset, device, precision, backend=backend)
    src = open_source(clip / gt["video"])
    frames = src.frames()
    first = first_frame(frames)
    path = track_video(tracker, src, frames, first, [tuple(gt["init_box"])], out_dir,
                       source_label=str(clip / gt["video"]), quiet=quiet, total=src.expected())
    click.echo(f"annotated video: {path / 'annotated.mp4'}\nmasks: {path / 'masks'}\ntracks: {path / 'tracks.json'}\n"
               f"ground truth: {truth}")
