"""``siamtrack weights``: the registry, downloads, and checking a file."""

from __future__ import annotations

import click

from siamtrack.commands._common import user_errors


@click.group()
def weights() -> None:
    """List, download and verify model weights.

    \b
    Examples:
      siamtrack weights list
      siamtrack weights download siammask-davis
      siamtrack weights path siammask-lite
      siamtrack weights verify SiamMask_VOT.pth
    """


@weights.command("list")
def list_cmd() -> None:
    """The registry as a table: name, file, present?, size, source."""
    from rich.table import Table

    from siamtrack import weights as reg
    from siamtrack.commands._common import console

    table = Table(title=f"siamtrack weights (folder: {reg.weights_dir()})")
    for col in ("name", "file", "present", "size", "arch", "preset", "source"):
        table.add_column(col)
    for e in reg.list_entries():
        path = reg.local_path(e.name)
        present = path.is_file()
        size = f"{path.stat().st_size / 1e6:.1f} MB" if present else "-"
        name = e.name + (" (default)" if e.name == reg.default_name() else "")
        table.add_row(name, e.file, "yes" if present else "no", size, e.arch, e.preset, e.url or e.source)
    console().print(table)


@weights.command()
@click.argument("name")
@click.option("--url", default=None, help="Download from this address instead of the registry's.")
@user_errors
def download(name: str, url: str | None) -> None:
    """Download NAME into the weights folder (resumable, verified, atomic)."""
    from siamtrack import weights as reg

    click.echo(str(reg.download(name, url=url)))


@weights.command()
@click.argument("name")
@user_errors
def path(name: str) -> None:
    """Print where the file of NAME is (or would be)."""
    from siamtrack import weights as reg

    click.echo(str(reg.local_path(name)))


@weights.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@user_errors
def verify(file: str) -> None:
    """Load FILE strictly and print its architecture, tensor count, size and SHA-256."""
    from siamtrack import weights as reg

    info = reg.verify(file)
    for k in ("arch", "keys", "size", "sha256"):
        click.echo(f"{k}: {info[k]}")
