"""The weights registry (data in ``registry.json``), where files live, download and verification.

Where files are looked for, first match wins:
1. ``$SIAMTRACK_WEIGHTS`` (a folder), if set;
2. the checkout's ``weights/`` folder (a source install, what ``make`` sets up);
3. ``~/.cache/siamtrack/weights``.

The official files have no published checksums. The first time a file is verified
against the expected network structure its size and SHA-256 are recorded in
``known_hashes.json`` beside it; later verifications must match that record.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from siamtrack.atomic import atomic_path, write_text_atomic
from siamtrack.errors import CheckpointError, SiamtrackError, WeightsDownloadError
from siamtrack.weights.download import download_file, sha256_file

ENV_DIR = "SIAMTRACK_WEIGHTS"
HASH_RECORD = "known_hashes.json"


@dataclass(frozen=True)
class WeightsEntry:
    """One registered checkpoint."""

    name: str
    file: str
    url: str | None
    arch: str
    preset: str
    size: int | None
    sha256: str | None
    license: str
    source: str
    description: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@cache
def _registry() -> dict[str, Any]:
    return json.loads(resources.files("siamtrack.weights").joinpath("registry.json").read_text())


def list_entries() -> list[WeightsEntry]:
    """Every registered checkpoint, in registry order."""
    return [WeightsEntry(**e) for e in _registry()["models"]]


def default_name() -> str:
    """The model used when the user names none."""
    return _registry()["default"]


def get_entry(name: str) -> WeightsEntry:
    """The registry entry for ``name``; a one-line error listing the known names otherwise."""
    for entry in list_entries():
        if entry.name == name:
            return entry
    known = ", ".join(e.name for e in list_entries())
    raise SiamtrackError(f"unknown model {name!r}; known models: {known}")


def weights_dir() -> Path:
    """The folder checkpoints are read from and downloaded to."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[2] / "weights"
    if checkout.is_dir():
        return checkout
    return Path.home() / ".cache" / "siamtrack" / "weights"


def local_path(name: str) -> Path:
    """Where the file of ``name`` is (or would be after download)."""
    return weights_dir() / get_entry(name).file


def is_present(name: str) -> bool:
    return local_path(name).is_file()


def _read_record(folder: Path) -> dict[str, Any]:
    path = folder / HASH_RECORD
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_record(folder: Path, record: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # a read-only weights folder only loses the trust-on-first-use record
        write_text_atomic(folder / HASH_RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")


def verify(path: str | Path, *, expected_arch: str | None = None) -> dict[str, Any]:
    """Load a checkpoint into its network (strictly) and return its identity.

    Returns ``{arch, keys, size, sha256}``. Raises :class:`CheckpointError` if the file
    does not load as a complete network (or not as ``expected_arch``).
    """
    from siamtrack.weights.loading import load_checkpoint

    path = Path(path)
    loaded = load_checkpoint(path)
    if expected_arch is not None and loaded.arch != expected_arch:
        raise CheckpointError(f"{path}: is a {loaded.arch} checkpoint, expected {expected_arch}")
    return {
        "arch": loaded.arch,
        "keys": len(loaded.model.state_dict()),
        "size": path.stat().st_size,
        "sha256": sha256_file(path),
    }


def check_known_hash(name: str, path: Path) -> dict[str, Any]:
    """Verify ``path`` for ``name`` against the registry hash or the first-use record."""
    entry = get_entry(name)
    info = verify(path, expected_arch=entry.arch)
    record = _read_record(path.parent)
    expected = entry.sha256 or record.get(entry.file, {}).get("sha256")
    if expected and info["sha256"] != expected:
        raise CheckpointError(f"{path}: SHA-256 {info['sha256'][:12]}... differs from the recorded "
                              f"{expected[:12]}...; delete it and download again")
    if not entry.sha256 and entry.file not in record:
        record[entry.file] = {"size": info["size"], "sha256": info["sha256"]}
        _write_record(path.parent, record)
    return info


def download(name: str, *, progress: bool = True, url: str | None = None) -> Path:
    """Fetch the file of ``name`` into the weights folder (resumable, verified, atomic)."""
    entry = get_entry(name)
    dest = local_path(name)
    if dest.is_file():
        return dest
    source = url or entry.url
    if not source:
        raise SiamtrackError(f"{name} is not downloadable; expected it at {dest}")

    def check(part: Path) -> None:
        try:
            verify(part, expected_arch=entry.arch)
        except CheckpointError as exc:
            raise CheckpointError(f"the file downloaded from {source} is not a valid {entry.arch} checkpoint "
                                  f"({str(exc).split(': ', 1)[-1]}); it was deleted. Put a good copy at {dest} "
                                  f"(or set {ENV_DIR}, or pass --checkpoint FILE)") from None

    bar = _progress_bar(entry.file) if progress else None
    try:
        if bar is None:
            download_file(source, dest, sha256=entry.sha256, size=entry.size, verify=check)
        else:
            with bar as (callback):
                download_file(source, dest, sha256=entry.sha256, size=entry.size, verify=check,
                              progress=callback)
    except WeightsDownloadError as exc:
        raise WeightsDownloadError(
            f"{exc}. Download {entry.file} by hand from {source} and put it at {dest} "
            f"(or set {ENV_DIR} to its folder, or pass --checkpoint FILE)") from None
    check_known_hash(name, dest)
    return dest


class _progress_bar:
    """A rich progress bar as a context manager yielding the download callback."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __enter__(self):
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        self.progress = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), transient=True)
        self.progress.__enter__()
        task = self.progress.add_task(self.label, total=None)

        def callback(done: int, total: int | None) -> None:
            self.progress.update(task, completed=done, total=total)

        return callback

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)


def resolve(name: str | None = None, *, download_missing: bool = True) -> tuple[WeightsEntry, Path]:
    """The registry entry and local file of ``name`` (default model if None), downloading if needed."""
    entry = get_entry(name or default_name())
    path = local_path(entry.name)
    if not path.is_file():
        if not download_missing or not entry.url:
            raise SiamtrackError(f"weights for {entry.name} not found at {path}; "
                                 f"run `siamtrack weights download {entry.name}` or pass --checkpoint FILE")
        path = download(entry.name)
    return entry, path


def export(src: str | Path, dst: str | Path, *, half: bool = True) -> dict[str, Any]:
    """Write a trained checkpoint as a shippable file: weights (fp16 storage if ``half``) plus the
    architecture, model config, tuned preset and training step; returns its size and SHA-256.

    Loading casts back to float32, so fp16 storage only rounds the stored values.
    """
    import torch

    from siamtrack.weights.loading import read_checkpoint

    ckpt = read_checkpoint(src)
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    kept = ("arch", "config", "preset", "preset_tuning", "step")
    out = {"state_dict": state, **{k: ckpt[k] for k in kept if k in ckpt}}
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        torch.save(out, tmp)
    return {"size": dst.stat().st_size, "sha256": sha256_file(dst)}
