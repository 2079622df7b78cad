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
      siamtrack weights verify siammask-lite
      siamtrack weights verify SiamMask_VOT.pth
    """


@weights.command("list")
def list_cmd() -> None:
    """The registry as a table (name, file, where found, size, source), then the lookup order.

    The preset column is what a run of that model tracks with: a present checkpoint's own preset
    (``<model>-tuned``) when it stores one, else the registry's."""
    from rich.table import Table

    from siamtrack import weights as reg
    from siamtrack.commands._common import console
    from siamtrack.errors import SiamtrackError
    from siamtrack.tracker import registry_preset

    table = Table(title="siamtrack weights")
    for col in ("name", "file", "present", "size", "arch", "preset", "source"):
        table.add_column(col)
    labels = {folder: label for folder, label in reg.lookup_dirs()}
    for e in reg.list_entries():
        path = reg.find(e.name)
        present = f"yes ({labels.get(path.parent, path.parent)})" if path is not None else "no"
        size = f"{path.stat().st_size / 1e6:.1f} MB" if path is not None else "-"
        name = e.name + (" (default)" if e.name == reg.default_name() else "")
        try:
            preset = registry_preset(e.name, path)
        except SiamtrackError:
            preset = f"{e.preset} (file unreadable: siamtrack weights verify {e.name})"
        table.add_row(name, e.file, present, size, e.arch, preset, e.url or e.source)
    out = console()
    out.print(table)
    target = reg.download_dir()
    out.print("Looked up in order (first match wins):", highlight=False)
    for i, (folder, label) in enumerate(reg.lookup_dirs(), 1):
        note = ", downloads go here" if folder == target else ""
        out.print(f"  {i}. {folder} ({label}{note})", highlight=False, soft_wrap=True)


@weights.command()
@click.argument("name")
@click.option("--url", default=None, help="Download from this address instead of the registry's.")
@user_errors
def download(name: str, url: str | None) -> None:
    """Download NAME into the first writable weights folder (resumable, verified, atomic)."""
    from siamtrack import weights as reg

    click.echo(str(reg.download(name, url=url)))


@weights.command()
@click.argument("name")
@user_errors
def path(name: str) -> None:
    """Print where the file of NAME is (or where a download would put it)."""
    from siamtrack import weights as reg

    click.echo(str(reg.local_path(name)))


@weights.command()
@click.argument("target")
@user_errors
def verify(target: str) -> None:
    """Check a FILE or the file of a registry NAME: load it strictly, compare its size and SHA-256 with
    the registry or the record made on first use, print its architecture, tensor count, size and SHA-256."""
    from pathlib import Path

    from siamtrack import weights as reg
    from siamtrack.errors import SiamtrackError

    if Path(target).is_file():
        info = reg.verify_file(target)
    elif target in {e.name for e in reg.list_entries()}:
        info = reg.verify_name(target)
    else:
        known = ", ".join(e.name for e in reg.list_entries())
        raise SiamtrackError(f"{target}: does not exist: no such file, and not a registry model (known: {known})")
    for k in ("path", "arch", "keys", "size", "sha256", "check"):
        if k in info:
            click.echo(f"{k}: {info[k]}")
