"""Where model files are looked for (every folder in order, the shipped model never hidden), where
downloads go, and the size/SHA-256 check on every use (registry hash and trust-on-first-use record).

No network and no shared data: the shipped siammask-lite stands in for a downloaded file.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from siamtrack import weights
from siamtrack.commands.weights import weights as weights_cli
from siamtrack.errors import CheckpointError, SiamtrackError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = weights.PACKAGE_DIR / "siammask-lite.pt"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty home (so an empty user cache) and no $SIAMTRACK_WEIGHTS."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(weights.ENV_DIR, raising=False)
    return tmp_path / "home"


@pytest.fixture
def registry(monkeypatch):
    """The real registry plus "tiny": no registry hash (trust on first use), an unreachable URL."""
    real = weights._registry()
    tiny = {"name": "tiny", "file": "tiny.pt", "url": "http://127.0.0.1:9/tiny.pt", "arch": "siammask_lite",
            "preset": "lite", "size": None, "sha256": None, "license": "test", "source": "test",
            "description": "test"}
    data = {"default": real["default"], "models": [dict(m) for m in real["models"]] + [tiny]}
    monkeypatch.setattr(weights, "_registry", lambda: data)
    return data


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


def flip_last_byte(src: Path, dst: Path) -> Path:
    data = bytearray(src.read_bytes())
    data[-1] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


# lookup ---------------------------------------------------------------------------------------


def test_the_shipped_model_is_package_data():
    assert SHIPPED.is_file() and SHIPPED.parent == Path(weights.__file__).resolve().parent
    assert not (REPO / "weights" / "siammask-lite.pt").exists()  # one copy in the repository


def test_lookup_order(home, tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv(weights.ENV_DIR, f"{a}{os.pathsep}{b}")
    assert weights.search_dirs() == [a, b, REPO / "weights", home / ".cache" / "siamtrack" / "weights",
                                     weights.PACKAGE_DIR]
    labels = [label for _, label in weights.lookup_dirs()]
    assert labels == ["$SIAMTRACK_WEIGHTS", "$SIAMTRACK_WEIGHTS", "checkout", "user cache", "shipped with siamtrack"]


def test_the_environment_variable_does_not_hide_the_shipped_model(home, tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_DIR, str(tmp_path / "mine"))
    entry, path = weights.resolve()
    assert entry.name == "siammask-lite" and path == SHIPPED
    assert weights.is_present("siammask-lite") and weights.local_path("siammask-lite") == SHIPPED
    # a missing file would be downloaded into the variable's folder, never into the package
    assert weights.local_path("siammask-davis") == tmp_path / "mine" / "SiamMask_DAVIS.pth"


def test_first_folder_that_has_the_file_wins(home, tmp_path, monkeypatch, registry):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    monkeypatch.setenv(weights.ENV_DIR, f"{a}{os.pathsep}{b}")
    shutil.copy(SHIPPED, b / "tiny.pt")
    assert weights.find("tiny") == b / "tiny.pt"
    shutil.copy(SHIPPED, a / "tiny.pt")
    assert weights.find("tiny") == a / "tiny.pt"


def test_downloads_go_to_the_first_writable_folder(home, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cannot = blocker / "weights"  # can never be created: its parent is a file
    ok = tmp_path / "ok"
    monkeypatch.setenv(weights.ENV_DIR, f"{cannot}{os.pathsep}{ok}")
    assert weights.download_dir() == ok
    assert weights.local_path("siammask-vot") == ok / "SiamMask_VOT.pth"
    assert not weights._writable(weights.PACKAGE_DIR)  # never download into the installed package


def test_not_found_lists_every_folder_and_what_to_do(home, tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_DIR, str(tmp_path / "mine"))
    with pytest.raises(SiamtrackError) as exc:
        weights.resolve("siammask-vot", download_missing=False)
    msg = one_line(exc)
    assert f"not found at {tmp_path / 'mine' / 'SiamMask_VOT.pth'}" in msg
    for folder in weights.search_dirs():
        assert str(folder) in msg
    assert "siamtrack weights download siammask-vot" in msg and "--checkpoint FILE" in msg


# the check on use: registry hash -----------------------------------------------------------------


def test_the_shipped_model_is_checked_against_the_registry(home):
    assert weights.check_hash("siammask-lite", SHIPPED) == "registry"


def test_a_damaged_copy_earlier_in_the_lookup_is_refused(home, tmp_path, monkeypatch):
    from siamtrack.api import from_pretrained

    monkeypatch.setenv(weights.ENV_DIR, str(tmp_path))
    bad = flip_last_byte(SHIPPED, tmp_path / "siammask-lite.pt")
    for load in (lambda: weights.resolve(), lambda: from_pretrained(device="cpu")):
        with pytest.raises(CheckpointError) as exc:
            load()
        msg = one_line(exc)
        assert str(bad) in msg and "differs from the recorded acf6b33d47d1" in msg and "(registry)" in msg
        assert f"delete it to use the copy shipped in {weights.PACKAGE_DIR}" in msg
    bad.unlink()
    assert weights.resolve()[1] == SHIPPED


def test_a_truncated_file_is_refused_by_size_before_hashing(home, tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_DIR, str(tmp_path))
    (tmp_path / "siammask-lite.pt").write_bytes(SHIPPED.read_bytes()[:1000])

    def no_hash(path):
        raise AssertionError("hashed a file whose size is already wrong")

    monkeypatch.setattr(weights, "sha256_file", no_hash)
    with pytest.raises(CheckpointError, match=r"size 1000 bytes differs from the recorded 5415381 bytes"):
        weights.resolve()


def test_a_damaged_shipped_copy_says_reinstall(home, registry):
    registry["models"][0]["sha256"] = "0" * 64
    with pytest.raises(CheckpointError) as exc:
        weights.resolve()
    msg = one_line(exc)
    assert str(SHIPPED) in msg and "reinstall siamtrack" in msg


# the check on use: trust on first use ---------------------------------------------------------


def test_first_use_records_then_every_use_checks(home, tmp_path, monkeypatch, registry):
    monkeypatch.setenv(weights.ENV_DIR, str(tmp_path))
    dest = tmp_path / "tiny.pt"
    shutil.copy(SHIPPED, dest)
    record = tmp_path / weights.HASH_RECORD
    # a file put there by hand: the first use verifies its structure and records it (no download)
    assert weights.resolve("tiny") == (weights.get_entry("tiny"), dest)
    assert json.loads(record.read_text()) == {"tiny.pt": {"size": 5415381, "sha256": weights.get_entry(
        "siammask-lite").sha256}}
    assert weights.check_hash("tiny", dest) == str(record)
    # a different file of the same size under the same name is refused on use, with what to do
    flip_last_byte(SHIPPED, dest)
    with pytest.raises(CheckpointError) as exc:
        weights.resolve("tiny")
    msg = one_line(exc)
    assert str(dest) in msg and "differs from the recorded" in msg and f"({record})" in msg
    assert "siamtrack weights download tiny" in msg and f"remove its entry from {record}" in msg
    with pytest.raises(CheckpointError):
        weights.download("tiny", progress=False)  # present: checked, not silently returned
    assert json.loads(record.read_text())["tiny.pt"]["sha256"] == weights.get_entry("siammask-lite").sha256


def test_first_use_refuses_the_wrong_network_and_records_nothing(home, tmp_path, monkeypatch, registry):
    monkeypatch.setenv(weights.ENV_DIR, str(tmp_path))
    registry["models"][-1]["arch"] = "siammask_sharp"
    shutil.copy(SHIPPED, tmp_path / "tiny.pt")
    with pytest.raises(CheckpointError, match="is a siammask_lite checkpoint, expected siammask_sharp"):
        weights.resolve("tiny")
    assert not (tmp_path / weights.HASH_RECORD).exists()


def test_the_hash_is_computed_once_per_file_version(home, tmp_path, monkeypatch, registry):
    monkeypatch.setenv(weights.ENV_DIR, str(tmp_path))
    dest = tmp_path / "tiny.pt"
    shutil.copy(SHIPPED, dest)
    calls = []
    real = weights.sha256_file
    monkeypatch.setattr(weights, "sha256_file", lambda p: calls.append(p) or real(p))
    weights.resolve("tiny")
    weights.resolve("tiny")
    assert len(calls) == 1
    st = dest.stat()
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touched: hashed again
    weights.resolve("tiny")
    assert len(calls) == 2


# siamtrack weights verify / list -------------------------------------------------------------------


def invoke(*args: str):
    assert args[0] == "weights"
    return CliRunner().invoke(weights_cli, list(args[1:]), prog_name="siamtrack weights")


def test_weights_verify_name_and_file(home, tmp_path):
    result = invoke("weights", "verify", "siammask-lite")
    assert result.exit_code == 0, result.output
    assert f"path: {SHIPPED}" in result.output and "check: size and SHA-256 match the registry" in result.output

    bad = flip_last_byte(SHIPPED, tmp_path / "siammask-lite.pt")
    result = invoke("weights", "verify", str(bad))
    assert result.exit_code == 1 and "differs from the recorded" in result.output
    assert len(result.output.strip().splitlines()) == 1

    other = tmp_path / "mine.pt"
    shutil.copy(SHIPPED, other)
    result = invoke("weights", "verify", str(other))
    assert result.exit_code == 0 and "arch: siammask_lite" in result.output and "not a registry file" in result.output

    result = invoke("weights", "verify", "nope")
    assert result.exit_code == 1 and "not a registry model" in result.output


def test_weights_list_shows_where_and_the_lookup_order(home, tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_DIR, str(tmp_path / "mine"))
    monkeypatch.setenv("COLUMNS", "250")
    result = invoke("weights", "list")
    assert result.exit_code == 0, result.output
    assert "yes (shipped with siamtrack)" in result.output
    assert f"1. {tmp_path / 'mine'} ($SIAMTRACK_WEIGHTS, downloads go here)" in result.output
    assert f"{weights.PACKAGE_DIR} (shipped with siamtrack)" in result.output


def test_weights_list_shows_the_preset_a_run_uses(home, tmp_path, monkeypatch):
    """The shipped model stores its tuned preset: that is what `run` tracks with, not the registry's
    fallback; a file that cannot be read says so instead of failing the listing."""
    from siamtrack.api import from_pretrained

    monkeypatch.setenv(weights.ENV_DIR, str(tmp_path / "mine"))
    monkeypatch.setenv("COLUMNS", "250")
    entry = weights.get_entry("siammask-lite")
    result = invoke("weights", "list")
    row = next(line for line in result.output.splitlines() if "siammask-lite (default)" in line)
    used = from_pretrained("siammask-lite", device="cpu").preset.name
    assert used == "siammask-lite-tuned" and used in row and entry.preset not in row

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / entry.file).write_bytes(b"not a checkpoint")
    result = invoke("weights", "list")
    assert result.exit_code == 0, result.output
    assert f"{entry.preset} (file unreadable)" in result.output
