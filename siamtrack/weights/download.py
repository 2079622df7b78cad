"""Resumable, verified downloads: a ``.part`` file, an optional checksum, then an atomic rename."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from siamtrack.errors import WeightsDownloadError

CHUNK = 1 << 20

ProgressFn = Callable[[int, int | None], None]


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _open(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "siamtrack"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=timeout)


def download_file(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    progress: ProgressFn | None = None,
    timeout: float = 30.0,
    verify: Callable[[Path], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest`` atomically.

    Bytes go to ``dest.part``; an interrupted download resumes from it (HTTP Range) when
    the server allows, and restarts otherwise. The finished file is checked (size,
    SHA-256, then ``verify(path)``) before it is renamed into place, so ``dest`` either
    does not exist or is complete and verified. A failed check deletes the part file.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the part file is already complete
            response = None
        else:
            raise WeightsDownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsDownloadError(f"cannot reach {url} ({reason})") from None

    if response is not None:
        with response:
            resumed = offset > 0 and response.status == 206
            if not resumed:
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else size
            done = offset
            try:
                with open(part, "ab" if resumed else "wb") as f:
                    while True:
                        block = response.read(CHUNK)
                        if not block:
                            break
                        f.write(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
            except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
                raise WeightsDownloadError(
                    f"download of {url} interrupted after {done} bytes ({exc}); run again to resume") from None
            if total is not None and done < total:
                raise WeightsDownloadError(
                    f"download of {url} ended early ({done} of {total} bytes); run again to resume")

    got = part.stat().st_size
    try:
        if size is not None and got != size:
            raise WeightsDownloadError(f"{dest.name}: expected {size} bytes, got {got}")
        if sha256 is not None and sha256_file(part) != sha256.lower():
            raise WeightsDownloadError(f"{dest.name}: SHA-256 mismatch (corrupt or different file)")
        if verify is not None:
            verify(part)
    except Exception:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest
