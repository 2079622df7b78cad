"""``siamtrack demo``: track a generated sample clip with the default model (no data, no network)."""

from __future__ import annotations

import click

from siamtrack.commands._common import model_options, user_errors


@click.command()
@model_options
@click.option("--clip-dir", type=click.Path(file_okay=False), default="runs/demo-clip", show_default=True,
              help="Where the generated clip (and its ground truth) is kept.")
@click.option("--quiet", is_flag=True)
@user_errors
def demo(model, checkpoint, preset, device, precision, clip_dir: str, quiet: bool) -> None:
    """Generate the sample clip once, track its object, and print where the outputs are.

    \b
    Example:
      siamtrack demo            # what `make demo` runs
    """
    import json
    from pathlib import Path

    from siamtrack.commands._common import first_frame, new_run_dir
    from siamtrack.commands.run import track_video
    from siamtrack.io.sources import open_source
    from siamtrack.io.synthetic import make_clip

    clip = Path(clip_dir)
    if not (clip / "groundtruth.json").is_file():
        make_clip(clip)
    gt = json.loads((clip / "groundtruth.json").read_text())
    src = open_source(clip / gt["video"])
    frames = src.frames()
    first = first_frame(frames)
    out_dir = new_run_dir("demo")
    track_video(src, frames, first, [tuple(gt["init_box"])], out_dir, model=model, checkpoint=checkpoint,
                preset=preset, device=device, precision=precision, video=True, masks=True, show=False,
                quiet=quiet, max_frames=None, start=0)
    click.echo(f"annotated video: {out_dir / 'annotated.mp4'}\nmasks: {out_dir / 'masks'}\n"
               f"tracks: {out_dir / 'tracks.json'}")
