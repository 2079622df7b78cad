"""The weights registry (data in ``registry.json``), where files live, download and verification.

A registry file is looked for in these folders, in order; the first folder that has it wins:

1. each folder in ``$SIAMTRACK_WEIGHTS`` (one folder, or several separated by ``os.pathsep``);
2. the checkout's ``weights/`` folder (a source checkout only: the folder beside ``pyproject.toml``);
3. ``~/.cache/siamtrack/weights``;
4. the package itself (``siamtrack/weights/``), which ships the default model.

Downloads go to the first of folders 1-3 that can be written. The package folder is read
only: nothing is downloaded into an installed package.

A model is one file (a torch checkpoint) or several (``files``: the ONNX networks an OpenCV
peer runs, each with its own URL, size and SHA-256). A file name may hold a relative subpath
(``nanotrack/onnx-v2/...``), looked up and downloaded beneath each folder.

Every file is checked when it is used (``resolve``, hence ``siamtrack.from_pretrained``, and
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


CHECKPOINT = "checkpoint"  # a torch checkpoint, verified by loading it into its network
FILE_KEYS = ("file", "url", "size", "sha256")


@dataclass(frozen=True)
class WeightsFile:
    """One file of a registered model: its name beneath a weights folder, where to fetch it, what it must be."""

    file: str
    url: str | None
    size: int | None
    sha256: str | None


@dataclass(frozen=True)
class WeightsEntry:
    """One registered model: a checkpoint (``format`` "checkpoint", one file) or the files another runtime
    runs (e.g. "onnx" for OpenCV's trackers), which cannot be loaded to check them and so must carry
    their size and SHA-256 in the registry."""

    name: str
    files: tuple[WeightsFile, ...]
    arch: str
    preset: str | None
    license: str
    source: str
    description: str
    format: str = CHECKPOINT

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeightsEntry:
        """A registry record: one file given inline (``file``, ``url``, ``size``, ``sha256``) or a ``files`` list."""
        rest = {k: v for k, v in data.items() if k not in FILE_KEYS and k != "files"}
        listed = data["files"] if "files" in data else [{k: data[k] for k in FILE_KEYS}]
        return cls(files=tuple(WeightsFile(**f) for f in listed), **rest)

    # The (first) file: all there is of a checkpoint entry.
    @property
    def file(self) -> str:
        return self.files[0].file

    @property
    def url(self) -> str | None:
        return self.files[0].url

    @property
    def size(self) -> int | None:
        return self.files[0].size

    @property
    def sha256(self) -> str | None:
        return self.files[0].sha256

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@cache
def _registry() -> dict[str, Any]:
    return json.loads(resources.files("siamtrack.weights").joinpath("registry.json").read_text())


def list_entries() -> list[WeightsEntry]:
    """Every registered model, in registry order."""
    return [WeightsEntry.from_dict(e) for e in _registry()["models"]]


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


def _find_file(file: str) -> Path | None:
    return next((folder / file for folder in search_dirs() if (folder / file).is_file()), None)


def find_files(name: str) -> list[Path | None]:
    """Each file of ``name`` in the first lookup folder that has it (None where no folder has it)."""
    return [_find_file(f.file) for f in get_entry(name).files]


def find(name: str) -> Path | None:
    """The (first) file of ``name`` in the first lookup folder that has it; None unless every file is found."""
    found = find_files(name)
    return found[0] if all(p is not None for p in found) else None


def local_paths(name: str) -> list[Path]:
    """Where each file of ``name`` is, or where a download would put it."""
    entry = get_entry(name)
    return [p or download_dir() / f.file for p, f in zip(find_files(name), entry.files, strict=True)]


def local_path(name: str) -> Path:
    """Where the (first) file of ``name`` is, or where a download would put it."""
    return local_paths(name)[0]


def is_present(name: str) -> bool:
    return find(name) is not None


def _file_of(entry: WeightsEntry, path: Path) -> WeightsFile:
    """The registry file that ``path`` stands for: the one whose name (subpath included) it ends
    with, else the one with its base name, else the first."""
    posix = path.as_posix()
    for f in entry.files:
        if posix == f.file or posix.endswith("/" + f.file):
            return f
    return next((f for f in entry.files if Path(f.file).name == path.name), entry.files[0])


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
    wf = _file_of(entry, path)
    if wf.sha256:
        return wf.size, wf.sha256.lower(), "registry"
    known = _read_record(path.parent).get(Path(wf.file).name)
    if isinstance(known, dict) and isinstance(known.get("sha256"), str):
        size = known.get("size")
        return (size if isinstance(size, int) else None), known["sha256"].lower(), str(path.parent / HASH_RECORD)
    return None


def _remedy(entry: WeightsEntry, path: Path, where: str) -> str:
    """What to do about a file that does not match its recorded size and hash."""
    wf = _file_of(entry, path)
    shipped = PACKAGE_DIR / wf.file
    if not wf.url and wf.sha256:
        if path.resolve() == shipped.resolve():
            return "the installed copy is damaged: reinstall siamtrack (in a checkout: git checkout the file)"
        if shipped.is_file():
            return f"delete it to use the copy shipped in {PACKAGE_DIR}, or pass --checkpoint FILE to use it as is"
    fix = (f"delete it and run `siamtrack weights download {entry.name}`" if wf.url
           else "delete it and put a good copy there")
    if where != "registry":
        fix += f", or if you replaced it on purpose remove its entry from {where}"
    return fix + (", or pass --checkpoint FILE to use it as is" if entry.format == CHECKPOINT else "")


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


def _identity(entry: WeightsEntry, path: Path) -> dict[str, Any]:
    """``verify``'s dict for a file of a model that is not a checkpoint: its registry hash is its check."""
    return {"arch": entry.arch, "size": path.stat().st_size, "sha256": file_sha256(path)}


def check_known_hash(name: str, path: Path) -> dict[str, Any]:
    """Check ``path`` for ``name`` fully: size and SHA-256 against the registry or the first-use
    record (before anything is loaded), then the network structure; a file seen for the first time
    has its size and SHA-256 recorded in ``known_hashes.json`` beside it. Returns :func:`verify`'s dict.

    A file that is not a checkpoint cannot be loaded here, so its registry hash is all there is:
    without one it is refused.
    """
    entry = get_entry(name)
    path = Path(path)
    known = check_hash(name, path)
    if entry.format != CHECKPOINT:
        if known is None:
            raise CheckpointError(f"{path}: the registry has no size and SHA-256 for this {entry.format} file of "
                                  f"{name}, and it cannot be checked otherwise")
        return _identity(entry, path)
    info = verify(path, expected_arch=entry.arch)
    if known is None:
        record = _read_record(path.parent)
        record[Path(_file_of(entry, path).file).name] = {"size": info["size"], "sha256": info["sha256"]}
        _write_record(path.parent, record)
    return info


def _checked(entry: WeightsEntry, path: Path) -> Path:
    """``path`` after the check on use: hash against what is known, or the full first-use check."""
    if check_hash(entry.name, path) is None:
        check_known_hash(entry.name, path)
    return path


def _looked_in() -> str:
    return ", ".join(str(folder) for folder in search_dirs())


def download_files(name: str, *, progress: bool = True, url: str | None = None) -> list[Path]:
    """Fetch every file of ``name`` into the download folder (resumable, verified, atomic).

    A file already present anywhere in the lookup is checked and returned instead. ``url``
    replaces the registry's address, so it is for a model of one file only.
    """
    entry = get_entry(name)
    if url is not None and len(entry.files) > 1:
        raise SiamtrackError(f"{name} has {len(entry.files)} files and --url names one: download without --url, "
                             f"or put {', '.join(f.file for f in entry.files)} in a weights folder")
    return [_download_one(entry, wf, progress, url) for wf in entry.files]


def download(name: str, *, progress: bool = True, url: str | None = None) -> Path:
    """:func:`download_files`, returning the (first) file: all there is of a checkpoint."""
    return download_files(name, progress=progress, url=url)[0]


def _download_one(entry: WeightsEntry, wf: WeightsFile, progress: bool, url: str | None) -> Path:
    found = _find_file(wf.file)
    if found is not None:
        return _checked(entry, found)
    dest = download_dir() / wf.file
    source = url or wf.url
    if not source:
        raise SiamtrackError(f"{entry.name} is not downloadable; expected it at {dest} (looked in {_looked_in()})")
    if not _writable(dest.parent):
        raise SiamtrackError(f"no writable folder to download {wf.file} into (tried "
                             f"{', '.join(str(d) for d in search_dirs() if d.resolve() != PACKAGE_DIR)}); "
                             f"set {ENV_DIR} to a folder you can write")
    use_instead = f"(or set {ENV_DIR}" + (", or pass --checkpoint FILE)" if entry.format == CHECKPOINT else ")")

    def check(part: Path) -> None:
        try:
            verify(part, expected_arch=entry.arch)
        except CheckpointError as exc:
            raise CheckpointError(f"the file downloaded from {source} is not a valid {entry.arch} checkpoint "
                                  f"({str(exc).split(': ', 1)[-1]}); it was deleted. Put a good copy at {dest} "
                                  f"{use_instead}") from None

    verify_part = check if entry.format == CHECKPOINT else None
    bar = _progress_bar(wf.file) if progress else None
    try:
        if bar is None:
            download_file(source, dest, sha256=wf.sha256, size=wf.size, verify=verify_part)
        else:
            with bar as (callback):
                download_file(source, dest, sha256=wf.sha256, size=wf.size, verify=verify_part,
                              progress=callback)
    except WeightsDownloadError as exc:
        raise WeightsDownloadError(
            f"{exc}. Download {wf.file} by hand from {source} and put it at {dest} {use_instead}") from None
    check_known_hash(entry.name, dest)
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


def _not_found(entry: WeightsEntry, missing: list[WeightsFile] | None = None) -> SiamtrackError:
    """The one-line error for files of ``entry`` that no lookup folder has (all its files if not said)."""
    missing = missing or list(entry.files)
    names = ", ".join(f.file for f in missing)
    todo = f"run `siamtrack weights download {entry.name}`" if all(f.url for f in missing) else f"put {names} there"
    where = ", ".join(str(download_dir() / f.file) for f in missing)
    alternative = " or pass --checkpoint FILE" if entry.format == CHECKPOINT else ""
    return SiamtrackError(f"weights for {entry.name} not found at {where} (looked in {_looked_in()}); "
                          f"{todo}{alternative}")


def resolve_files(name: str | None = None, *, download_missing: bool = True) -> tuple[WeightsEntry, list[Path]]:
    """The registry entry and local files of ``name`` (default model if None), downloading if needed.

    Each file is the first found in :func:`search_dirs`; its size and SHA-256 are checked against
    the registry or the first-use record (a mismatch is a :class:`CheckpointError`).
    """
    entry = get_entry(name or default_name())
    found = find_files(entry.name)
    missing = [f for f, p in zip(entry.files, found, strict=True) if p is None]
    if missing:
        if not download_missing or not all(f.url for f in missing):
            raise _not_found(entry, missing)
        return entry, download_files(entry.name)
    return entry, [_checked(entry, p) for p in found]


def resolve(name: str | None = None, *, download_missing: bool = True) -> tuple[WeightsEntry, Path]:
    """:func:`resolve_files` with the (first) file: all there is of a checkpoint."""
    entry, paths = resolve_files(name, download_missing=download_missing)
    return entry, paths[0]


def verify_file(path: str | Path) -> dict[str, Any]:
    """``siamtrack weights verify FILE``: :func:`verify`, plus how the file compares with what is
    known of a registry file of the same name (``check``). A mismatch raises :class:`CheckpointError`."""
    path = Path(path)
    entry = next((e for e in list_entries() for f in e.files if Path(f.file).name == path.name), None)
    if entry is None:
        return {**verify(path), "check": "not a registry file name: no recorded hash to compare with"}
    where = check_hash(entry.name, path)
    info = verify(path, expected_arch=entry.arch) if entry.format == CHECKPOINT else _identity(entry, path)
    if where is None:
        check = f"no recorded hash for {entry.name} in {path.parent} yet (recorded on first use)"
    else:
        check = f"size and SHA-256 match the {where if where == 'registry' else 'record ' + where} ({entry.name})"
    return {**info, "check": check}


def verify_name(name: str) -> list[dict[str, Any]]:
    """``siamtrack weights verify NAME``: find the files of a registry model, check each fully (recording
    a checkpoint's hash on first use); per file :func:`verify`'s dict plus ``path`` and ``check``."""
    entry = get_entry(name)
    found = find_files(name)
    missing = [f for f, p in zip(entry.files, found, strict=True) if p is None]
    if missing:
        raise _not_found(entry, missing)
    out = []
    for path in found:
        where = check_hash(name, path)
        info = check_known_hash(name, path)
        if where is None:
            check = f"first use: size and SHA-256 recorded in {path.parent / HASH_RECORD}"
        else:
            check = f"size and SHA-256 match the {where if where == 'registry' else 'record ' + where}"
        out.append({**info, "path": str(path), "check": check})
    return out


def export(src: str | Path, dst: str | Path, *, half: bool = True, keep_preset: bool = True) -> dict[str, Any]:
    """Write a trained checkpoint as a shippable file: weights (fp16 storage if ``half``) plus the
    architecture, model config, tuned preset (unless not ``keep_preset``: then the registry entry's
    built-in preset applies) and training step; returns its size and SHA-256.

    Loading casts back to float32, so fp16 storage only rounds the stored values.
    """
    import torch

    from siamtrack.weights.loading import read_checkpoint

    ckpt = read_checkpoint(src)
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    kept = ("arch", "config", "step") + (("preset", "preset_tuning") if keep_preset else ())
    out = {"state_dict": state, **{k: ckpt[k] for k in kept if k in ckpt}}
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        torch.save(out, tmp)
    return {"size": dst.stat().st_size, "sha256": sha256_file(dst)}
