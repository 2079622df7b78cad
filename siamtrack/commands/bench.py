"""``siamtrack bench``: per-stage timings, fps, memory, FLOPs and fraction of peak, with no data needed."""

from __future__ import annotations

from typing import Any

import click

from siamtrack.commands._common import bbox_option, model_options, user_errors

SYNTHETIC_MODEL = "synthetic siammask_sharp (random weights, official shapes)"


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``WxH`` -> (w, h)."""
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not WxH, e.g. 854x480", param_hint="--size") from None
    if w < 32 or h < 32:
        raise click.BadParameter(f"{text!r} is too small (at least 32x32)", param_hint="--size")
    return w, h


def _frames(source: str | None, count: int, size: tuple[int, int] | None, bboxes: tuple[str, ...]):
    """``count`` BGR frames (a source shorter than that is looped), boxes and a description."""
    import cv2

    from siamtrack.commands._common import parse_bbox

    if source is None:
        from siamtrack.io import synthetic

        size = size or (854, 480)
        clip = list(synthetic.frames(count, size))
        boxes = [parse_bbox(b) for b in bboxes] or [clip[0].box]
        return [f.image for f in clip], boxes, f"generated clip (siamtrack.io.synthetic, {size[0]}x{size[1]})"
    from siamtrack.errors import SiamtrackError
    from siamtrack.io.sources import open_source

    src = open_source(source)
    images = [f.image for f in src.frames(0, count)]
    if not images:
        raise SiamtrackError(f"{source}: no frames")
    if size is not None:
        images = [cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in images]
    looped = len(images) < count
    images = [images[i % len(images)] for i in range(count)]
    h, w = images[0].shape[:2]
    boxes = [parse_bbox(b) for b in bboxes] or [(w / 3, h / 3, w / 3, h / 3)]
    note = ", looped" if looped else ""
    return images, boxes, f"{source} ({w}x{h}{note})"


def _tracker(model, checkpoint, preset, device, precision):
    """The tracker and where its weights came from; random official-shape weights when none are present."""
    from siamtrack import weights
    from siamtrack.commands._common import make_tracker

    if model or checkpoint:
        return make_tracker(model, checkpoint, preset, device, precision), "checkpoint" if checkpoint else "registry"
    if weights.is_present(weights.default_name()):
        return make_tracker(None, None, preset, device, precision), "registry default"
    import torch

    from siamtrack.models import build_model
    from siamtrack.tracker import Tracker

    torch.manual_seed(0)
    net = build_model("siammask_sharp")
    tracker = Tracker(net, preset or "davis", device=device, precision=precision, model_name=SYNTHETIC_MODEL)
    return tracker, "synthetic: no checkpoint given and the default model is not downloaded (cost does not " \
                    "depend on weight values)"


def _print(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"siamtrack bench: {report['model']} ({report['precision']}, {report['device']})")
    for col in ("step", "stage", "median ms", "p10 ms", "p90 ms"):
        table.add_column(col, justify="left" if col in ("step", "stage") else "right")
    for step in ("init", "track"):
        for i, (stage, s) in enumerate(report[step].items()):
            table.add_row(step if i == 0 else "", stage, f"{s['median_ms']:.1f}", f"{s['p10_ms']:.1f}",
                          f"{s['p90_ms']:.1f}", end_section=i == len(report[step]) - 1)
    console.print(table)
    cpu = report["cpu"]
    lines = [
        f"model: {report['model']} [{report['model_source']}], arch {report['arch']}, preset {report['preset']}",
        f"input: {report['source']}, {report['objects']} object(s), {report['timed_frames']} timed frames "
        f"after {report['warmup']} warm-up",
        f"speed: {report['fps']:.2f} frames/s (median step {report['wall']['median_ms']:.1f} ms, "
        f"{report['object_fps']:.2f} object-frames/s), {report['threads']} torch thread(s)",
        f"memory: peak RSS {report['peak_rss_mb']:.0f} MiB"
        + (f", CUDA max allocated {report['cuda_max_memory_allocated_mb']:.0f} MiB"
           if "cuda_max_memory_allocated_mb" in report else ""),
        f"compute: {report['flops_per_frame'] / 1e9:.2f} GFLOP per frame (network), "
        f"{report['achieved_gflops']:.1f} GFLOP/s achieved",
    ]
    if report["peak_gflops"]:
        lines.append(f"peak: {report['peak_gflops']:.0f} GFLOP/s estimated -> {100 * report['fraction_of_peak']:.0f} % "
                     f"of peak ({report['peak_assumption']})")
    else:
        lines.append(f"peak: {report['peak_assumption']}")
    if "gemm_gflops" in report:
        lines.append(f"matmul on the same threads: {report['gemm_gflops']:.0f} GFLOP/s measured -> "
                     f"{100 * report['fraction_of_gemm']:.0f} % of it")
    lines.append(f"cpu: {cpu['model']}; bf16: avx512_bf16 {'yes' if cpu['avx512_bf16'] else 'no'}, "
                 f"amx_bf16 {'yes' if cpu['amx_bf16'] else 'no'}")
    for line in lines:
        console.print(line, highlight=False)


@click.command("bench")
@click.argument("source", required=False)
@model_options
@bbox_option()
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads (default: torch's choice).")
@click.option("--objects", type=click.IntRange(min=1), default=None,
              help="Objects tracked at once (default: the number of --bbox, else 1).")
@click.option("--frames", type=click.IntRange(min=1), default=30, show_default=True, help="Timed track steps.")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="Untimed steps first.")
@click.option("--size", default=None, metavar="WxH", help="Frame size (generated clip: default 854x480).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Also write the report here.")
@user_errors
def bench(source: str | None, model, checkpoint, preset, device, precision, bboxes: tuple[str, ...],
          threads: int | None, objects: int | None, frames: int, warmup: int, size: str | None,
          json_path: str | None) -> None:
    """Time init and track per stage on a generated clip (or SOURCE): median and p10/p90, fps,
    peak memory, network FLOPs and the fraction of the machine's peak FLOP/s.

    \b
    Examples:
      siamtrack bench
      siamtrack bench --checkpoint SiamMask_DAVIS.pth --precision fp32 --threads 4 --json runs/bench.json
      siamtrack bench video.mp4 --bbox 305,112,165,250 --objects 4
    """
    import json
    from pathlib import Path

    import torch

    from siamtrack import __version__
    from siamtrack.bench import cpu_info, run_benchmark

    if threads:
        torch.set_num_threads(threads)
    images, boxes, described = _frames(source, 1 + warmup + frames, parse_size(size), bboxes)
    count = objects or len(boxes)
    boxes = [boxes[i % len(boxes)] for i in range(count)]
    tracker, model_source = _tracker(model, checkpoint, preset, device, precision)
    result = run_benchmark(tracker, images, boxes, warmup=warmup)
    preset_obj = tracker.preset
    report = {"siamtrack": __version__, "torch": torch.__version__, "model": tracker.model_name,
              "model_source": model_source, "arch": tracker.arch, "preset": preset_obj.name,
              "precision": tracker.precision, "device": str(tracker.device), "source": described,
              "warmup": warmup, **result, "cpu": cpu_info()}
    _print(report)
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n")
        click.echo(f"report: {path}")
