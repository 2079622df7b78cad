"""``siamtrack bench``: per-stage timings, fps, memory, FLOPs and fraction of peak, with no data needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from siamtrack.choices import BACKEND_PRECISIONS, BACKENDS, DEVICES, PRECISIONS, PRESET_VALUES, TRACKERS
from siamtrack.commands._common import bbox_option, user_errors

ARCHS = ("siammask_sharp", "siammask_lite")


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


def parse_list(text: str | None, choices: tuple[str, ...] | None, hint: str) -> list[str]:
    """A comma-separated option value -> its items (checked against ``choices``)."""
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    bad = [t for t in items if choices is not None and t not in choices]
    if bad:
        raise click.BadParameter(f"{', '.join(bad)}: choose from {', '.join(choices)}", param_hint=hint)
    return items


def parse_threads(text: str | None) -> list[int | None]:
    if not text:
        return [None]
    try:
        threads = [int(t) for t in parse_list(text, None, "--threads")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a list of thread counts, e.g. 1,2", param_hint="--threads") from None
    if any(t < 1 for t in threads):
        raise click.BadParameter("thread counts are at least 1", param_hint="--threads")
    return threads


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

    images = [f.image for f in open_source(source).frames(0, count)]
    if not images:
        raise SiamtrackError(f"{source}: no frames")
    if size is not None:
        images = [cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in images]
    looped = len(images) < count
    images = [images[i % len(images)] for i in range(count)]
    h, w = images[0].shape[:2]
    boxes = [parse_bbox(b) for b in bboxes] or [(w / 3, h / 3, w / 3, h / 3)]
    return images, boxes, f"{source} ({w}x{h}{', looped' if looped else ''})"


def _network(model: str | None, checkpoint: str | None, arch: str | None, preset: str | None):
    """The network to time, its name, preset and a note on where its weights came from.

    Random weights with the official shapes stand in when nothing is named and the default
    model is not downloaded: the cost of a forward pass does not depend on the values.
    """
    from siamtrack import weights
    from siamtrack.api import load_network
    from siamtrack.presets import DEFAULT_PRESET

    given = sum(x is not None for x in (model, checkpoint, arch))
    if given > 1:
        raise click.UsageError("give one of --model, --checkpoint and --arch")
    if checkpoint:
        net, _, chosen = load_network(checkpoint=checkpoint, preset=preset, model_name=Path(checkpoint).stem)
        return net, checkpoint, chosen, f"checkpoint {checkpoint}"
    if model or (arch is None and weights.is_present(weights.default_name())):
        net, name, chosen = load_network(model, preset=preset)
        return net, name, chosen, f"registry model {name}"
    import torch

    from siamtrack.models import build_model

    arch = arch or "siammask_sharp"
    torch.manual_seed(0)
    reason = "--arch given" if given else "no model named and the default model is not downloaded"
    return (build_model(arch), f"synthetic {arch}", preset or DEFAULT_PRESET.get(arch, "davis"),
            f"random weights with the official shapes ({reason}): timing does not depend on weight values")


def bench_combinations(backends: list[str], precisions: list[str], device: str) -> list[tuple[str, str]]:
    """Every (backend, precision) pair of the lists that the backend runs, in order (a pair left out is
    noted on stderr); a usage error when a precision has no backend to run it or a backend nothing to run."""
    from siamtrack.commands._common import check_backend

    for p in precisions:
        if not any(p in BACKEND_PRECISIONS[b] for b in backends):
            check_backend(backends[0], p)
    for backend in backends:
        if not any(p in BACKEND_PRECISIONS[backend] for p in precisions):
            raise click.BadParameter(f"the {backend} backend runs none of {', '.join(precisions)} (it runs "
                                     f"{', '.join(BACKEND_PRECISIONS[backend])})", param_hint="--precision")
        check_backend(backend, "auto", device)
    combos = []
    for backend in backends:
        for p in precisions:
            if p in BACKEND_PRECISIONS[backend]:
                combos.append((backend, p))
            else:
                runs = ", ".join(BACKEND_PRECISIONS[backend])
                click.echo(f"Note: {backend} {p} left out (the {backend} backend runs {runs})", err=True)
    return combos


def _label(r: dict[str, Any], several_models: bool = False) -> str:
    """A result's case: an OpenCV tracker's name, or backend (when not torch), precision, and whether
    it times the lost search."""
    if r["tracker"] != "siammask":
        return r["tracker"]
    backend = "" if r["backend"] == "torch" else "ort "
    model = f"{r['model']} " if several_models else ""
    return model + backend + r["precision"] + (" lost" if r["lost"] else "")


def _print(report: dict[str, Any]) -> None:
    from rich.table import Table

    from siamtrack.commands._common import console

    out = console()
    results = report["results"]
    several = len(report.get("models", [])) > 1
    what = report["model"] or ", ".join(report["trackers"])
    table = Table(title=f"siamtrack bench: {what}, {report['objects']} object(s), {report['device']}")
    for col in ("case", "threads", "step", "stage", "median ms", "p10 ms", "p90 ms"):
        table.add_column(col, justify="right" if col.endswith("ms") or col == "threads" else "left")
    for r in results:
        rows = [("init", "total", r["init"]["total"])] + [("track", s, v) for s, v in r["stages"].items()]
        for i, (step, stage, v) in enumerate(rows):
            first = i == 0
            label = _label(r, several)
            table.add_row(label if first else "", str(r["threads"]) if first else "",
                          step if i < 2 else "", stage, f"{v['median_ms']:.1f}",
                          f"{v['p10_ms']:.1f}", f"{v['p90_ms']:.1f}", end_section=i == len(rows) - 1)
    out.print(table)
    summary = Table(title="throughput and compute (medians)")
    ref = report.get("reference")
    for col in ("case", "threads", "fps", "object fps", "GFLOP/frame", "GFLOP/s", "of peak", "of matmul",
                f"vs {ref['case']}" if ref else "vs first"):
        summary.add_column(col, justify="left" if col == "case" else "right")
    for r in results:
        peak = f"{100 * r['fraction_of_peak']:.0f} %" if r["fraction_of_peak"] is not None else "-"
        gemm = f"{100 * r['fraction_of_gemm']:.0f} %" if "fraction_of_gemm" in r else "-"
        counted = r["gflops_per_frame"] is not None
        ratio = r.get("vs_reference") if ref else r["speedup_vs_first"]
        summary.add_row(_label(r, several), str(r["threads"]), f"{r['fps']:.2f}", f"{r['object_fps']:.2f}",
                        f"{r['gflops_per_frame']:.2f}" if counted else "-",
                        f"{r['achieved_gflops']:.1f}" if counted else "-", peak, gemm,
                        "-" if ratio is None else f"{ratio:.2f}x")
    out.print(summary)
    cpu = report["cpu"]
    lines = [
        (f"models: {report['model']}; {report['note']}" if len(report.get("models", [])) > 1 else
         f"model: {report['model']} ({report['arch']}, preset {report['preset']}); {report['note']}")
        if report["model"] else f"trackers: {', '.join(report['trackers'])}",
        f"input: {report['source']}; {results[0]['timed_frames']} timed steps after {report['warmup']} warm-up, "
        "cases interleaved frame by frame",
        f"memory: peak RSS {report['peak_rss_mb']:.0f} MiB (whole process)"
        + (f", CUDA max allocated {report['cuda_max_memory_allocated_mb']:.0f} MiB"
           if "cuda_max_memory_allocated_mb" in report else ""),
        f"cpu: {cpu['model']}; bf16: avx512_bf16 {'yes' if cpu['avx512_bf16'] else 'no'}, "
        f"amx_bf16 {'yes' if cpu['amx_bf16'] else 'no'}",
    ]
    if ref:
        lines.append(f"reference: {ref['case']} of the same network on the same frames, interleaved"
                     f"{' (added by --vs)' if ref['added'] else ''}; read figures across machines as these ratios")
    lines += [f"peak: {a}" for a in dict.fromkeys(r["peak_assumption"] for r in results)]
    if any(r["tracker"] != "siammask" for r in results):
        lines.append(f"OpenCV {report['opencv']} trackers: one stage (total), FLOPs not counted; "
                     "their threads are OpenCV's (cv2.setNumThreads)")
    if any(r["backend"] == "onnxruntime" for r in results):
        lines.append(f"onnxruntime {report['onnxruntime']}: trunk and heads run as one graph (search.onnx), timed "
                     "under heads; its backbone row is the hand-over of the crops")
    for line in lines:
        out.print(line, highlight=False, markup=False)


@click.command("bench")
@click.argument("source", required=False)
@bbox_option()
@click.option("--tracker", "trackers", default="siammask", show_default=True,
              help=f"One or several (comma-separated) of {', '.join(TRACKERS)}; timed interleaved "
                   "(siammask: every --backend/--precision case; an OpenCV tracker: one case per thread count).")
@click.option("--model", default=None, metavar="NAME",
              help="Registry model, or several comma-separated, timed interleaved (default: the default model if "
                   "present).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), default=None, help="A checkpoint file.")
@click.option("--arch", type=click.Choice(ARCHS), default=None,
              help="Time this architecture with random weights (cost does not depend on values).")
@click.option("--preset", type=click.Choice(list(PRESET_VALUES)), default=None,
              help="Tracking hyper-parameters (default: the model's own).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--backend", "backends", default="torch", show_default=True,
              help=f"One or several (comma-separated) of {', '.join(BACKENDS)}; timed interleaved.")
@click.option("--precision", "precisions", default="auto", show_default=True,
              help=f"One or several (comma-separated) of {', '.join(PRECISIONS)}; timed interleaved "
                   "(each backend with the precisions it runs: int8 on onnxruntime only).")
@click.option("--threads", default=None,
              help="Threads (torch's, or ONNX Runtime's intra-op), one or several comma-separated counts (e.g. 1,2).")
@click.option("--objects", type=click.IntRange(min=1), default=None,
              help="Objects tracked at once (default: the number of --bbox, else 1).")
@click.option("--frames", type=click.IntRange(min=1), default=30, show_default=True, help="Timed track steps.")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="Untimed steps first.")
@click.option("--size", default=None, metavar="WxH", help="Frame size (generated clip: default 854x480).")
@click.option("--lost", is_flag=True,
              help="Also time each case with every object lost (its re-detection search), interleaved.")
@click.option("--vs", "vs", type=click.Choice(["fp32-reference", "none"]), default="fp32-reference",
              show_default=True,
              help="Reference case every figure is also given as a ratio to (timed in the same run, added "
                   "if not listed): the official eager fp32 step of the same network.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Also write the report here.")
@user_errors
def bench(source: str | None, bboxes: tuple[str, ...], trackers: str, model: str | None, checkpoint: str | None,
          arch: str | None,
          preset: str | None, device: str, backends: str, precisions: str, threads: str | None, objects: int | None,
          frames: int, warmup: int, size: str | None, lost: bool, vs: str, json_path: str | None) -> None:
    """Time init and track per stage (crop, backbone, heads, refine, post, total): median and p10/p90,
    fps, peak memory, network FLOPs and the fraction of the machine's peak FLOP/s.

    Runs on a generated clip unless SOURCE (video, image folder or glob) is given.

    \b
    Examples:
      siamtrack bench
      siamtrack bench --precision fp32-reference,fp32,bf16 --threads 1,2 --json runs/bench.json
      siamtrack bench --backend torch,onnxruntime --precision fp32,int8 --threads 2
      siamtrack bench --checkpoint SiamMask_DAVIS.pth --objects 4
      siamtrack bench video.mp4 --bbox 305,112,165,250
      siamtrack bench --lost --threads 1
      siamtrack bench --tracker siammask,opencv-nano,opencv-vit --threads 2
      siamtrack bench --model siammask-lite,nanotrack-v3 --tracker siammask,opencv-nano --threads 2
    """
    import json
    from pathlib import Path

    import cv2
    import torch

    from siamtrack import __version__
    from siamtrack.api import build_tracker
    from siamtrack.bench import Case, cpu_info, reference_ratios, run_benchmark

    names = parse_list(trackers, TRACKERS, "--tracker") or ["siammask"]
    siammask = "siammask" in names
    if lost and names != ["siammask"]:
        raise click.BadParameter("--lost times SiamMask's re-detection search: use it with --tracker siammask only",
                                 param_hint="--lost")
    combos = bench_combinations(parse_list(backends, BACKENDS, "--backend") or ["torch"],
                                parse_list(precisions, PRECISIONS, "--precision") or ["auto"], device) \
        if siammask else []
    thread_list = parse_threads(threads)
    images, boxes, described = _frames(source, 1 + warmup + frames, parse_size(size), bboxes)
    count = objects or len(boxes)
    boxes = [boxes[i % len(boxes)] for i in range(count)]
    models = [m.strip() for m in model.split(",") if m.strip()] if model else [None]
    if len(set(models)) != len(models):
        raise click.BadParameter(f"{model} names a model twice", param_hint="--model")
    networks = [_network(m, checkpoint, arch, preset) for m in models] if siammask else []
    vs = vs if siammask else "none"
    added = vs != "none" and ("torch", vs) not in combos
    if added:
        combos.append(("torch", vs))
    cases = []
    for tracker_name in names:  # in the order given: the first is what "vs first" compares with
        if tracker_name != "siammask":
            from siamtrack.eval.baselines import OpenCVTracker

            cases += [Case(OpenCVTracker(tracker_name), t) for t in thread_list]
            continue
        for net, name, chosen_preset, _ in networks:
            for backend, p in combos:
                for searching in (False, True) if lost else (False,):
                    if backend == "torch":  # torch threads are process-wide: one tracker, set per case
                        tracker = build_tracker(net, chosen_preset, device=device, precision=p, model_name=name)
                        cases += [Case(tracker, t, lost=searching) for t in thread_list]
                    else:  # ONNX Runtime fixes its threads per session: one tracker per count
                        cases += [Case(build_tracker(net, chosen_preset, device=device, precision=p, model_name=name,
                                                     backend=backend, threads=t), t, lost=searching)
                                  for t in thread_list]
    result = run_benchmark(cases, images, boxes, warmup=warmup)
    first = next((c.tracker for c in cases if c.tracker.arch != "opencv"), cases[0].tracker)
    name = ", ".join(n for _, n, _, _ in networks) or None
    note = "; ".join(n for _, _, _, n in networks) or None
    report = {"siamtrack": __version__, "torch": torch.__version__, "opencv": cv2.__version__, "trackers": names,
              "model": name, "models": [n for _, n, _, _ in networks], "arch": first.arch,
              "preset": first.preset.name if first.preset else None,
              "device": str(first.device), "source": described, "objects": count,
              "warmup": warmup, "frames": frames, "note": note, "cpu": cpu_info(), **result}
    if vs != "none":
        fps = reference_ratios(report["results"], {"backend": "torch", "precision": vs})
        report["reference"] = {"case": vs, "added": added, "fps": fps}
    if torch.device(str(first.device)).type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(first.device)
    if any(backend == "onnxruntime" for backend, _ in combos):
        import onnxruntime

        report["onnxruntime"] = onnxruntime.__version__
    _print(report)
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n")
        click.echo(f"report: {path}")
