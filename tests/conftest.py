"""Shared fixtures. ``../shared`` (golden data, dev sequences, training data) is optional:
tests that need it skip with a reason when it is absent (a user's fresh clone)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
GOLDEN = SHARED / "golden"
SYNTH_SHA256 = "cdec1b7dfea6aacd398b60cb705d8711d68f87eba644c164bf822209674ef1fd"

torch.set_num_threads(2)


def need(path: Path) -> Path:
    """Skip the calling test when a shared data path is absent."""
    if not path.exists():
        pytest.skip(f"{path.relative_to(SHARED.parent)} not present (shared data is optional)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return need(SHARED)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return need(GOLDEN)


@pytest.fixture(scope="session")
def synthetic_checkpoint(tmp_path_factory, golden_dir) -> Path:
    """The golden synthetic checkpoint (official layout, seed 4), generated once per session."""
    out = tmp_path_factory.mktemp("ckpt") / "synthetic_siammask.pth"
    proc = subprocess.run([sys.executable, str(golden_dir / "make_checkpoint.py"), str(out)],
                          capture_output=True, text=True, check=True)
    assert f"sha256 {SYNTH_SHA256}" in proc.stdout, proc.stdout
    return out
