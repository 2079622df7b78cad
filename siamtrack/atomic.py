"""Files replaced in one step: readers see the old file or the new one, never a part of one,
and a write that fails (an error, Ctrl-C, a signal) leaves no temporary file behind.

Standard library only, so every room (weights, train, io) can use it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_folder", "atomic_path", "write_text_atomic"]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name next to ``path`` to write the new content to.

    When the block ends normally the temporary file is renamed over ``path`` (atomic on
    POSIX and Windows within one folder); when it raises, anything written is removed and the
    old ``path``, if any, is left as it was. The name carries the process id, so concurrent
    writers of one file do not write into each other's temporary file.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Replace ``path`` with ``text`` in one step."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


@contextlib.contextmanager
def atomic_folder(path: str | Path, marker: str, *, replace: bool = True) -> Iterator[Path]:
    """A temporary folder next to ``path`` to write a set of files into, ``marker`` among them (the file
    whose presence says the set is complete).

    When the block ends normally the folder becomes ``path``: renamed, when ``path`` does not exist
    or is empty; otherwise its files replace those of the same name in ``path`` one by one, the old
    ``marker`` removed first and the new one moved last, so ``path`` never holds a complete-looking
    mix (other files in ``path`` stay). ``replace=False`` keeps a ``path`` that is already complete
    (a cache that a concurrent writer filled first) and drops the new files. When the block raises,
    the temporary folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        try:
            os.rename(tmp, path)
        except OSError:
            if not path.is_dir():
                raise
            if not replace and (path / marker).is_file():
                return
            (path / marker).unlink(missing_ok=True)
            for item in sorted(tmp.iterdir(), key=lambda p: p.name == marker):
                os.replace(item, path / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
