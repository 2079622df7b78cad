"""``siamtrack bench``: per-stage timings, fps, memory and FLOPs, on a generated clip or a given source."""

from __future__ import annotations

import click

from siamtrack.commands._common import bbox_option, user_errors


@click.command()
@click.argument("source", required=False)
@bbox_option()
@click.option("--model", default=None, metavar="NAME", help="Registry model (default: the default model if present).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None)
@click.option("--arch", type=click.Choice(["siammask_sharp", "siammask_lite"]), default=None,
              help="Time this architecture with random weights (cost does not depend on values).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--precision", "precisions", default="auto", show_default=True,
              help="One or several (comma-separated) of fp32-reference, fp32, bf16, fp16, auto; timed interleaved.")
@click.option("--threads", default=None, help="Torch threads, one or several comma-separated values (e.g. 1,2).")
@click.option("--objects", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--frames", "n_frames", type=click.IntRange(min=3), default=40, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--size", default="854x480", show_default=True, help="Generated clip size WxH.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Also write the results here.")
@user_errors
def bench(source, bboxes, model, checkpoint, arch, device, precisions, threads, objects, n_frames, warmup, size,
          json_path) -> None:
    """Time init and track steps per stage (crop, backbone, heads, refine, post, total).

    \b
    Examples:
      siamtrack bench
      siamtrack bench --precision fp32-reference,fp32,bf16 --threads 1,2 --json runs/bench.json
      siamtrack bench --arch siammask_sharp --objects 4
      siamtrack bench video.mp4 --bbox 305,112,165,250
    """
    import json
    from pathlib import Path

    import torch
    from rich.table import Table

    from siamtrack import bench as B
    from siamtrack import weights as reg
    from siamtrack.commands._common import console, parse_bbox
    from siamtrack.errors import SiamtrackError
    from siamtrack.io.sources import open_source
    from siamtrack.io.synthetic import frames as synthetic_frames
    from siamtrack.models import build_model
    from siamtrack.tracker import Tracker
    from siamtrack.weights.loading import load_checkpoint

    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{size!r} is not WxH", param_hint="--size") from None
    if source:
        src = open_source(source)
        frames = [f.image for f in src.frames(0, n_frames)]
        if len(frames) < 3:
            raise SiamtrackError(f"{source}: needs at least 3 frames")
        fh, fw = frames[0].shape[:2]
        box = parse_bbox(bboxes[0]) if bboxes else (fw * 0.375, fh * 0.375, fw * 0.25, fh * 0.25)
        what = str(source)
    else:
        gen = list(synthetic_frames(n_frames, (w, h)))
        frames = [f.image for f in gen]
        box = gen[0].box
        what = f"generated clip {w}x{h}"
    boxes = [box] + [(box[0] + 7 * k, box[1] + 5 * k, box[2], box[3]) for k in range(1, objects)]

    note = ""
    if checkpoint:
        loaded = load_checkpoint(checkpoint)
        net, label, preset = loaded.model, Path(checkpoint).name, loaded.preset or "davis"
    elif arch or (model is None and not reg.is_present(reg.default_name())):
        arch = arch or "siammask_sharp"
        net, label, preset = build_model(arch).eval(), f"{arch} (random weights)", "davis"
        note = "random weights with the real shapes: timings are valid, outputs are not"
    else:
        entry, path = reg.resolve(model)
        loaded = load_checkpoint(path)
        net, label, preset = loaded.model, entry.name, loaded.preset or entry.preset

    thread_list = [int(t) for t in threads.split(",")] if threads else [torch.get_num_threads()]
    precision_list = [p.strip() for p in precisions.split(",")]
    info = B.cpu_info()
    reports = []
    for nt in thread_list:
        torch.set_num_threads(nt)
        cases = [B.Case(p, Tracker(net, preset, device=device, precision=p, model_name=label))
                 for p in precision_list]
        flops = cases[0].tracker.flops_per_frame()
        B.run_cases(cases, frames, boxes, warmup)
        reports += [B.report(c, objects, flops, info, nt) for c in cases]
    result = {"source": what, "model": label, "note": note, "device": str(cases[0].tracker.device), "cpu": info,
              "objects": objects, "frames_timed": max(len(frames) - 1 - warmup, 0), "peak_rss_mb": B.peak_rss_mb(),
              "results": reports}
    if cases[0].tracker.device.type == "cuda":
        result["cuda_max_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20

    out = console()
    table = Table(title=f"siamtrack bench: {label}, {objects} object(s), {what}")
    for col in ("precision", "threads", *B.STAGES, "fps", "init ms", "GFLOP/s", "of peak", "vs first"):
        table.add_column(col, justify="right")
    base = reports[0]["stages"]["total"]["median_ms"]
    for r in reports:
        st = r["stages"]
        frac = f"{100 * r['fraction_of_peak']:.0f}%" if r["fraction_of_peak"] else "-"
        table.add_row(r["precision"], str(r["threads"]), *[f"{st[s]['median_ms']:.1f}" for s in B.STAGES],
                      f"{r['fps']:.1f}", f"{r['init_ms']:.1f}", f"{r['achieved_gflops']:.0f}", frac,
                      f"{base / st['total']['median_ms']:.2f}x")
    out.print(table)
    out.print(f"CPU: {info.get('model')} | AVX512-BF16: {info.get('avx512_bf16')} | AMX: {info.get('amx_bf16')}")
    out.print(f"{reports[0]['gflops_per_frame']:.2f} GFLOP per frame per object | "
                  f"peak RSS {result['peak_rss_mb']:.0f} MB")
    out.print(f"stage times are medians in ms; peak = {reports[0]['peak_assumption']}")
    if note:
        out.print(f"note: {note}")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=1) + "\n")
        click.echo(f"written: {json_path}")
