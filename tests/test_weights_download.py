"""Downloads against a local HTTP server: atomic, resumable, verified, with one-line errors."""

from __future__ import annotations

import hashlib
import io
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from siamtrack import weights
from siamtrack.errors import CheckpointError, SiamtrackError, WeightsDownloadError
from siamtrack.models import build_model
from siamtrack.weights.download import download_file
from tests.http_helpers import Site, cut_off, full, ranged, serving

BODY = np.random.default_rng(5).integers(0, 256, 5 * (1 << 19) + 123, dtype=np.uint8).tobytes()  # ~2.5 MiB
BODY_SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def site() -> Iterator[Site]:
    with serving() as running:
        yield running


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# download_file ---------------------------------------------------------------------------------


def test_normal_transfer(site, tmp_path):
    url = site.route("/w.pth", full(BODY))
    dest = tmp_path / "sub" / "w.pth"
    calls = []
    got = download_file(url, dest, sha256=BODY_SHA, size=len(BODY), progress=lambda d, t: calls.append((d, t)))
    assert got == dest
    assert dest.read_bytes() == BODY
    assert sorted(p.name for p in dest.parent.iterdir()) == ["w.pth"]  # no .part left
    assert len(calls) >= 3
    done = [d for d, _ in calls]
    assert done == sorted(set(done)) and done[-1] == len(BODY)
    assert all(t == len(BODY) for _, t in calls)
    assert site.ranges == [None]


def test_http_404(site, tmp_path):
    url = site.url("/missing.pth")
    dest = tmp_path / "w.pth"
    with pytest.raises(WeightsDownloadError, match="HTTP 404") as exc:
        download_file(url, dest)
    assert url in one_line(exc)
    assert list(tmp_path.iterdir()) == []


def test_truncated_transfer_resumes_with_range(site, tmp_path):
    half = len(BODY) // 2
    url = site.route("/w.pth", cut_off(BODY, half))
    dest = tmp_path / "w.pth"
    part = tmp_path / "w.pth.part"
    with pytest.raises(WeightsDownloadError, match="ended early") as exc:
        download_file(url, dest, sha256=BODY_SHA)
    assert f"({half} of {len(BODY)} bytes)" in one_line(exc)
    assert not dest.exists()
    assert part.read_bytes() == BODY[:half]

    site.route("/w.pth", ranged(BODY))
    calls = []
    download_file(url, dest, sha256=BODY_SHA, progress=lambda d, t: calls.append(d))
    assert site.ranges == [None, f"bytes={half}-"]
    assert dest.read_bytes() == BODY
    assert not part.exists()
    assert calls[0] > half  # counting went on from the part file


def test_complete_part_file_is_finished_on_416(site, tmp_path):
    url = site.route("/w.pth", ranged(BODY))
    dest = tmp_path / "w.pth"
    (tmp_path / "w.pth.part").write_bytes(BODY)
    download_file(url, dest, sha256=BODY_SHA)
    assert site.ranges == [f"bytes={len(BODY)}-"]
    assert dest.read_bytes() == BODY
    assert not (tmp_path / "w.pth.part").exists()


def test_server_ignoring_range_restarts(site, tmp_path):
    url = site.route("/w.pth", full(BODY))
    dest = tmp_path / "w.pth"
    (tmp_path / "w.pth.part").write_bytes(b"stale bytes " * 100)
    calls = []
    download_file(url, dest, progress=lambda d, t: calls.append(d))
    assert site.ranges == ["bytes=1200-"]  # it asked to resume
    assert dest.read_bytes() == BODY  # and started over when the answer was 200
    assert not (tmp_path / "w.pth.part").exists()
    assert calls[-1] == len(BODY)  # counted from zero, not from the stale part


@pytest.mark.parametrize("check,match", [
    ({"sha256": "0" * 64}, "SHA-256 mismatch"),
    ({"size": len(BODY) + 1}, f"expected {len(BODY) + 1} bytes, got {len(BODY)}"),
])
def test_corrupt_file_is_deleted(site, tmp_path, check, match):
    url = site.route("/w.pth", full(BODY))
    dest = tmp_path / "w.pth"
    with pytest.raises(WeightsDownloadError, match=match) as exc:
        download_file(url, dest, **check)
    one_line(exc)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its .part


def test_failed_verify_deletes_the_part(site, tmp_path):
    url = site.route("/w.pth", full(BODY))
    dest = tmp_path / "w.pth"
    seen = []

    def verify(path: Path) -> None:
        seen.append(path.read_bytes() == BODY)
        raise CheckpointError(f"{path}: not a checkpoint")

    with pytest.raises(CheckpointError, match="not a checkpoint"):
        download_file(url, dest, verify=verify)
    assert seen == [True]  # verify saw the complete file
    assert list(tmp_path.iterdir()) == []


def test_connection_refused(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/w.pth"
    with pytest.raises(WeightsDownloadError, match="cannot reach") as exc:
        download_file(url, tmp_path / "w.pth", timeout=5)
    assert url in one_line(exc)
    assert list(tmp_path.iterdir()) == []


# weights.download (registry level) ----------------------------------------------------------


@pytest.fixture(scope="module")
def lite_checkpoint() -> bytes:
    """A small valid checkpoint (siammask-lite with seeded random weights, ~11 MB)."""
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save({"arch": "siammask_lite", "state_dict": build_model("siammask_lite").state_dict()}, buf)
    return buf.getvalue()


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A registry of two test models and a weights folder of our own."""
    monkeypatch.setenv("SIAMTRACK_WEIGHTS", str(tmp_path))
    base = {"url": None, "preset": "davis", "size": None, "sha256": None, "license": "test", "source": "test",
            "description": "test"}
    models = [{**base, "name": "tiny", "file": "tiny.pt", "arch": "siammask_lite"},
              {**base, "name": "sharp", "file": "sharp.pth", "arch": "siammask_sharp"}]
    monkeypatch.setattr(weights, "_registry", lambda: {"default": "tiny", "models": models})
    return tmp_path


def test_registry_download(site, registry, lite_checkpoint):
    url = site.route("/tiny.pt", full(lite_checkpoint))
    dest = weights.download("tiny", url=url)
    assert dest == registry / "tiny.pt"
    assert dest.read_bytes() == lite_checkpoint
    assert not (registry / "tiny.pt.part").exists()
    record = (registry / weights.HASH_RECORD).read_text()
    assert hashlib.sha256(lite_checkpoint).hexdigest() in record
    # present: no second transfer
    assert weights.download("tiny", url=url, progress=False) == dest
    assert site.ranges == [None]
    assert weights.resolve("tiny", download_missing=False) == (weights.get_entry("tiny"), dest)


def test_registry_download_error_says_where_to_put_the_file(site, registry):
    url = site.url("/tiny.pt")
    with pytest.raises(WeightsDownloadError) as exc:
        weights.download("tiny", url=url, progress=False)
    msg = one_line(exc)
    assert "HTTP 404" in msg
    assert f"from {url} and put it at {registry / 'tiny.pt'}" in msg
    assert "SIAMTRACK_WEIGHTS" in msg and "--checkpoint" in msg
    assert list(registry.iterdir()) == []


@pytest.mark.parametrize("content", ["noise", "wrong-arch"])
def test_registry_download_rejects_what_is_not_the_model(site, registry, lite_checkpoint, content):
    body = BODY if content == "noise" else lite_checkpoint  # a valid checkpoint, but of the other network
    url = site.route("/sharp.pth", full(body))
    with pytest.raises(CheckpointError) as exc:
        weights.download("sharp", url=url, progress=False)
    msg = one_line(exc)
    # Names where it came from, that it was deleted, and where a good copy goes.
    assert url in msg and "deleted" in msg and str(registry / "sharp.pth") in msg and "SIAMTRACK_WEIGHTS" in msg
    if content == "wrong-arch":
        assert "is a siammask_lite checkpoint, expected siammask_sharp" in msg
    assert site.ranges == [None]  # it was fetched, then rejected
    assert list(registry.iterdir()) == []


def test_not_downloadable(registry):
    with pytest.raises(SiamtrackError, match="not downloadable") as exc:
        weights.download("tiny", progress=False)
    assert str(registry / "tiny.pt") in one_line(exc)
    with pytest.raises(SiamtrackError, match="tiny not found at"):
        weights.resolve("tiny")
