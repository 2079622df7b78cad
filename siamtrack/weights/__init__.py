"""The weights registry (data in ``registry.json``), where files live, download and verification.

A registry file is looked for in these folders, in order; the first folder that has it wins:

1. each folder in ``$SIAMTRACK_WEIGHTS`` (one folder, or several separated by ``os.pathsep``);
2. the checkout's ``weights/`` folder (a source checkout only: the folder beside ``pyproject.toml``);
3. ``~/.cache/siamtrack/weights``;
4. the package itself (``siamtrack/weights/``), which ships the default model.

Downloads go to the first of folders 1-3 that can be written. The package folder is read
only: nothing is downloaded into an installed package.

Every file is checked when it is used (``resolve``, hence ``Tracker.from_pretrained``, and
``siamtrack weights verify``): size and SHA-256 must match the registry where it has them
(the shipped model) and otherwise the record written on first use. The official files have
no published checksums: the first time one is verified against the expected network
structure, its size and SHA-256 are recorded in ``known_hashes.json`` beside it (trust on
first use), and every later use must match that record. A mismatch is a one-line error that
says what to do. Hashing is cheap next to loading (about 60 ms per 100 MB with SHA
instructions) and is done once per process per file version (path, size, mtime, inode).
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
# The folder of this package: the shipped default model lives here (package data).
PACKAGE_DIR = Path(__file__).resolve().parent
USER_CACHE = Path("~/.cache/siamtrack/weights")


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


def _checkout_dir() -> Path | None:
    """The checkout's ``weights/`` folder when siamtrack runs from a source checkout (``pip install -e .``
    or the repository on ``sys.path``); None for an installed wheel."""
    root = PACKAGE_DIR.parents[1]
    if (root / "pyproject.toml").is_file() and (root / "weights").is_dir():
        return root / "weights"
    return None


def lookup_dirs() -> list[tuple[Path, str]]:
    """Every folder a file is looked for in, in order, with what it is."""
    found: list[tuple[Path, str]] = []
    for part in os.environ.get(ENV_DIR, "").split(os.pathsep):
        if part.strip():
            found.append((Path(part.strip()).expanduser(), f"${ENV_DIR}"))
    checkout = _checkout_dir()
    if checkout is not None:
        found.append((checkout, "checkout"))
    found.append((USER_CACHE.expanduser(), "user cache"))
    found.append((PACKAGE_DIR, "shipped with siamtrack"))
    seen: set[Path] = set()
    unique = []
    for folder, label in found:
        key = folder.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((folder, label))
    return unique


def search_dirs() -> list[Path]:
    """The folders a file is looked for in, in order (first match wins)."""
    return [folder for folder, _ in lookup_dirs()]


def _writable(folder: Path) -> bool:
    """Whether files can be created in ``folder`` (or in the folder it would be made in)."""
    if folder.resolve() == PACKAGE_DIR:
        return False
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def download_dir() -> Path:
    """Where downloads go: the first writable folder of the lookup, never the installed package."""
    candidates = [folder for folder in search_dirs() if folder.resolve() != PACKAGE_DIR]
    return next((folder for folder in candidates if _writable(folder)), candidates[0])


def weights_dir() -> Path:
    """Where downloads go (kept for callers of the single-folder API); see :func:`search_dirs` for reading."""
    return download_dir()


def find(name: str) -> Path | None:
    """The file of ``name`` in the first lookup folder that has it, or None."""
    file = get_entry(name).file
    return next((folder / file for folder in search_dirs() if (folder / file).is_file()), None)


def local_path(name: str) -> Path:
    """Where the file of ``name`` is, or where a download would put it."""
    return find(name) or download_dir() / get_entry(name).file


def is_present(name: str) -> bool:
    return find(name) is not None


def _read_record(folder: Path) -> dict[str, Any]:
    path = folder / HASH_RECORD
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _write_record(folder: Path, record: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # a read-only weights folder only loses the trust-on-first-use record
        write_text_atomic(folder / HASH_RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")


# SHA-256 per file version seen in this process: (real path, size, mtime_ns, inode) -> digest.
_HASHED: dict[tuple[str, int, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, computed once per process for each version of the file."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _HASHED:
        _HASHED[key] = sha256_file(path)
    return _HASHED[key]


def _expected(entry: WeightsEntry, path: Path) -> tuple[int | None, str, str] | None:
    """(size, SHA-256, where they come from) that ``path`` must match; None if nothing is known yet."""
    if entry.sha256:
        return entry.size, entry.sha256.lower(), "registry"
    known = _read_record(path.parent).get(entry.file)
    if isinstance(known, dict) and isinstance(known.get("sha256"), str):
        size = known.get("size")
        return (size if isinstance(size, int) else None), known["sha256"].lower(), str(path.parent / HASH_RECORD)
    return None


def _remedy(entry: WeightsEntry, path: Path, where: str) -> str:
    """What to do about a file that does not match its recorded size and hash."""
    shipped = PACKAGE_DIR / entry.file
    if not entry.url and entry.sha256:
        if path.resolve() == shipped.resolve():
            return "the installed copy is damaged: reinstall siamtrack (in a checkout: git checkout the file)"
        if shipped.is_file():
            return f"delete it to use the copy shipped in {PACKAGE_DIR}, or pass --checkpoint FILE to use it as is"
    fix = (f"delete it and run `siamtrack weights download {entry.name}`" if entry.url
           else "delete it and put a good copy there")
    if where != "registry":
        fix += f", or if you replaced it on purpose remove its entry from {where}"
    return fix + ", or pass --checkpoint FILE to use it as is"


def check_hash(name: str, path: str | Path) -> str | None:
    """Compare ``path``'s size and SHA-256 with the registry or the first-use record beside it.

    Returns where the expected values came from (``"registry"`` or the record's path), or None
    when nothing is known about the file yet. A mismatch raises a one-line :class:`CheckpointError`
    that says what to do. Cheap: a stat, and one hash per process for each version of the file.
    """
    entry = get_entry(name)
    path = Path(path)
    expected = _expected(entry, path)
    if expected is None:
        return None
    size, sha, where = expected
    got_size = path.stat().st_size
    if size is not None and got_size != size:
        raise CheckpointError(f"{path}: size {got_size} bytes differs from the recorded {size} bytes ({where}): "
                              f"truncated or a different file; {_remedy(entry, path, where)}")
    got = file_sha256(path)
    if got != sha:
        raise CheckpointError(f"{path}: SHA-256 {got[:12]}... differs from the recorded {sha[:12]}... ({where}): "
                              f"corrupt or a different file; {_remedy(entry, path, where)}")
    return where


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
        "sha256": file_sha256(path),
    }


def check_known_hash(name: str, path: Path) -> dict[str, Any]:
    """Check ``path`` for ``name`` fully: size and SHA-256 against the registry or the first-use
    record (before anything is loaded), then the network structure; a file seen for the first time
    has its size and SHA-256 recorded in ``known_hashes.json`` beside it. Returns :func:`verify`'s dict."""
    entry = get_entry(name)
    path = Path(path)
    known = check_hash(name, path)
    info = verify(path, expected_arch=entry.arch)
    if known is None:
        record = _read_record(path.parent)
        record[entry.file] = {"size": info["size"], "sha256": info["sha256"]}
        _write_record(path.parent, record)
    return info


def _checked(entry: WeightsEntry, path: Path) -> Path:
    """``path`` after the check on use: hash against what is known, or the full first-use check."""
    if check_hash(entry.name, path) is None:
        check_known_hash(entry.name, path)
    return path


def _looked_in() -> str:
    return ", ".join(str(folder) for folder in search_dirs())


def download(name: str, *, progress: bool = True, url: str | None = None) -> Path:
    """Fetch the file of ``name`` into the download folder (resumable, verified, atomic).

    A file already present anywhere in the lookup is checked and returned instead.
    """
    entry = get_entry(name)
    found = find(name)
    if found is not None:
        return _checked(entry, found)
    dest = download_dir() / entry.file
    source = url or entry.url
    if not source:
        raise SiamtrackError(f"{name} is not downloadable; expected it at {dest} (looked in {_looked_in()})")
    if not _writable(dest.parent):
        raise SiamtrackError(f"no writable folder to download {entry.file} into (tried "
                             f"{', '.join(str(d) for d in search_dirs() if d.resolve() != PACKAGE_DIR)}); "
                             f"set {ENV_DIR} to a folder you can write")

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


def _not_found(entry: WeightsEntry) -> SiamtrackError:
    todo = f"run `siamtrack weights download {entry.name}`" if entry.url else f"put {entry.file} there"
    return SiamtrackError(f"weights for {entry.name} not found at {download_dir() / entry.file} "
                          f"(looked in {_looked_in()}); {todo} or pass --checkpoint FILE")


def resolve(name: str | None = None, *, download_missing: bool = True) -> tuple[WeightsEntry, Path]:
    """The registry entry and local file of ``name`` (default model if None), downloading if needed.

    The file is the first found in :func:`search_dirs`; its size and SHA-256 are checked against
    the registry or the first-use record (a mismatch is a :class:`CheckpointError`).
    """
    entry = get_entry(name or default_name())
    path = find(entry.name)
    if path is None:
        if not download_missing or not entry.url:
            raise _not_found(entry)
        return entry, download(entry.name)
    return entry, _checked(entry, path)


def verify_file(path: str | Path) -> dict[str, Any]:
    """``siamtrack weights verify FILE``: :func:`verify`, plus how the file compares with what is
    known of a registry file of the same name (``check``). A mismatch raises :class:`CheckpointError`."""
    path = Path(path)
    entry = next((e for e in list_entries() if e.file == path.name), None)
    if entry is None:
        return {**verify(path), "check": "not a registry file name: no recorded hash to compare with"}
    where = check_hash(entry.name, path)
    info = verify(path, expected_arch=entry.arch)
    if where is None:
        check = f"no recorded hash for {entry.name} in {path.parent} yet (recorded on first use)"
    else:
        check = f"size and SHA-256 match the {where if where == 'registry' else 'record ' + where} ({entry.name})"
    return {**info, "check": check}


def verify_name(name: str) -> dict[str, Any]:
    """``siamtrack weights verify NAME``: find the file of a registry model, check it fully (recording
    its hash on first use) and return :func:`verify`'s dict plus ``path`` and ``check``."""
    path = find(name)
    if path is None:
        raise _not_found(get_entry(name))
    where = check_hash(name, path)
    info = check_known_hash(name, path)
    if where is None:
        check = f"first use: size and SHA-256 recorded in {path.parent / HASH_RECORD}"
    else:
        check = f"size and SHA-256 match the {where if where == 'registry' else 'record ' + where}"
    return {**info, "path": str(path), "check": check}


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
