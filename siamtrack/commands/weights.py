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
      siamtrack weights download opencv-nano
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
    from siamtrack.api import registry_preset
    from siamtrack.commands._common import console
    from siamtrack.errors import SiamtrackError

    table = Table(title="siamtrack weights")
    for col in ("name", "file", "present", "size", "arch", "preset", "source"):
        table.add_column(col)
    for e in reg.list_entries():
        paths = reg.find_files(e.name)
        present = "no"
        if all(p is not None for p in paths):
            folders = {label for folder, label in reg.lookup_dirs() for f, p in zip(e.files, paths, strict=True)
                       if folder / f.file == p}
            present = f"yes ({', '.join(sorted(folders))})"
        size = f"{sum(p.stat().st_size for p in paths) / 1e6:.1f} MB" if present != "no" else "-"
        name = e.name + (" (default)" if e.name == reg.default_name() else "")
        preset = e.preset or "-"
        if e.format == reg.CHECKPOINT:
            try:
                preset = registry_preset(e.name, paths[0])
            except SiamtrackError:
                preset = f"{e.preset} (file unreadable)"
        table.add_row(name, "\n".join(f.file for f in e.files), present, size, e.arch, preset,
                      e.url if len(e.files) == 1 and e.url else e.source)
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
    """Download NAME (each of its files) into the first writable weights folder (resumable, verified, atomic)."""
    from siamtrack import weights as reg

    for path in reg.download_files(name, url=url):
        click.echo(str(path))


@weights.command()
@click.argument("name")
@user_errors
def path(name: str) -> None:
    """Print where each file of NAME is (or where a download would put it)."""
    from siamtrack import weights as reg

    for file in reg.local_paths(name):
        click.echo(str(file))


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
        infos = [reg.verify_file(target)]
    elif target in {e.name for e in reg.list_entries()}:
        infos = reg.verify_name(target)
    else:
        known = ", ".join(e.name for e in reg.list_entries())
        raise SiamtrackError(f"{target}: does not exist: no such file, and not a registry model (known: {known})")
    for i, info in enumerate(infos):
        if i:
            click.echo("")
        for k in ("path", "arch", "keys", "size", "sha256", "check"):
            if k in info:
                click.echo(f"{k}: {info[k]}")
