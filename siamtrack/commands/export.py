"""``siamtrack export onnx``: the tracker's graphs as ONNX files with a JSON sidecar."""

from __future__ import annotations

from pathlib import Path

import click

from siamtrack.choices import PRESET_VALUES
from siamtrack.commands._common import user_errors


@click.group("export")
def export_group() -> None:
    """Export a model for other runtimes.

    \b
    Example:
      siamtrack export onnx --out siammask-lite-onnx/
    """


@export_group.command("onnx")
@click.option("--model", default=None, metavar="NAME",
              help="Registry model (see `siamtrack weights list`); default: the registry's default.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A checkpoint file to export instead of a registry model.")
@click.option("--preset", type=click.Choice(list(PRESET_VALUES)), default=None,
              help="The preset the sidecar records (default: the model's own).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--precision", type=click.Choice(["fp32", "int8"]), default="fp32", show_default=True,
              help="int8: statically quantized, calibrated on training videos (see --calibration).")
@click.option("--calibration", type=click.Path(exists=True, file_okay=False), default=None,
              help="int8: folder of training videos (<seq>/JPEGImages, <seq>/Annotations) to calibrate on "
                   "(default: $SIAMTRACK_CALIBRATION, else the checkout's ../shared/train_data/videos).")
@click.option("--overwrite", is_flag=True, help="Allow writing into a non-empty --out folder.")
@user_errors
def onnx(model: str | None, checkpoint: str | None, preset: str | None, out: str, precision: str,
         calibration: str | None, overwrite: bool) -> None:
    """Write template.onnx, search.onnx, refine.onnx and siamtrack-onnx.json into --out.

    template.onnx: template crop -> what the tracker keeps per object (SiamMask: the three
    correlation kernels; NanoTrack-based models: the template features), once per object;
    search.onnx: search crop and one object's template outputs -> score and box maps and the
    features refine needs; refine.onnx: those features and the chosen cell -> 127x127 mask
    logits (a box-only model has none). The sidecar names the layout (docs/cli.md).
    Each graph is checked with onnx.checker and run once in ONNX Runtime against torch.

    \b
    Examples:
      siamtrack export onnx --out lite-onnx/
      siamtrack export onnx --model siammask-davis --out davis-onnx/
      siamtrack export onnx --checkpoint SiamMask_VOT.pth --precision int8 --out vot-int8/
    """
    import tempfile

    from siamtrack.api import load_network
    from siamtrack.backends.onnx_export import GRAPHS, SIDECAR, write_export
    from siamtrack.commands._common import summary_table
    from siamtrack.presets import PRESETS
    from siamtrack.runs import OutDir

    if model and checkpoint:
        raise click.UsageError("give --model or --checkpoint, not both")
    if calibration and precision != "int8":
        raise click.UsageError("--calibration is for --precision int8")
    target = OutDir(out, "onnx", overwrite, owned=(*(f"{g}.onnx" for g in GRAPHS), SIDECAR)).requested
    net, name, chosen = load_network(model, checkpoint=checkpoint, preset=preset)
    chosen = chosen if not isinstance(chosen, str) else PRESETS[chosen]
    meta = {"model": name, "preset": chosen.to_dict()}
    if precision == "fp32":
        sidecar = write_export(net, target, meta)
    else:
        from siamtrack.backends.onnx_quant import calibration_root, write_int8

        source = calibration_root(calibration)
        with tempfile.TemporaryDirectory() as tmp:
            write_export(net, Path(tmp) / "fp32", meta)
            click.echo(f"calibrating int8 on crops from {source} ...", err=True)
            sidecar = write_int8(Path(tmp) / "fp32", target, source)
    rows = [("model", f"{name} ({sidecar['arch']})"), ("precision", precision), ("preset", chosen.name),
            ("opset", sidecar["opset"])]
    rows += [(f"{g}.onnx", f"{(target / f'{g}.onnx').stat().st_size / 1e6:.1f} MB") for g in sidecar["graphs"]]
    for g, diff in sidecar.get("max_abs_diff_vs_torch", {}).items():
        rows.append((f"{g} vs torch", f"max |diff| {diff:.2g}"))
    summary_table("siamtrack export onnx", rows)
    click.echo(str(target))
