"""Shared fixtures. ``../shared`` (golden data, dev sequences, training data) is optional:
tests that need it skip with a reason when it is absent (a user's fresh clone). Everything
that only needs "a network with official-layout weights" uses ``synthetic_checkpoint``,
made inside the suite. ``SIAMTRACK_SHARED`` names another place for it (a GPU machine that gets
a copy of the working tree only: ``scripts/gpu_check.py`` points it at the tree's ``shared/``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.official_weights import seeded_state_dict, write_checkpoint

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SIAMTRACK_SHARED") or Path(__file__).resolve().parents[2] / "shared")
GOLDEN = SHARED / "golden"
GOLDEN_SHA256 = "cdec1b7dfea6aacd398b60cb705d8711d68f87eba644c164bf822209674ef1fd"

torch.set_num_threads(2)


def need(path: Path) -> Path:
    """Skip the calling test when a shared data path is absent."""
    if not path.exists():
        pytest.skip(f"{path.relative_to(SHARED.parent)} not present (shared data is optional)")
    return path


def default_sigint() -> None:
    """``preexec_fn`` for a child that a test interrupts with SIGINT: Ctrl-C's default action, also
    when the suite runs as a background job (which starts with SIGINT ignored and passes that on)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def sequence_j(tracker, root: Path, name: str, frames: int = 30) -> float:
    """Mean mask IoU of ``tracker`` over the first ``frames`` frames of DAVIS-layout sequence ``name``
    (started from its first mask's box; the first and last frames not scored, as in DAVIS)."""
    import numpy as np

    from siamtrack.eval.davis import region_j
    from siamtrack.train import datasets as ds

    track = ds.davis_tracks(root, sequences=[name])[0]
    cache = ds.FrameCache()
    tracker.init(cache.frame(track.frames[0]), tuple(track.boxes[0]))
    values = []
    for i in range(1, min(len(track.frames), frames) - 1):
        (r,) = tracker.track(cache.frame(track.frames[i]))
        values.append(region_j(cache.mask(track, i) > 0, r.mask))
    return float(np.mean(values))


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory) -> Iterator[Path]:
    """The onnxruntime backend's export cache for the whole session: a temporary folder, never the
    user's ``~/.cache`` (exports made by one test are reused by the next)."""
    from siamtrack.backends.onnx_runtime import CACHE_ENV

    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("onnx-cache")
        mp.setenv(CACHE_ENV, str(path))
        yield path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return need(SHARED)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return need(GOLDEN)


@pytest.fixture(scope="session")
def synthetic_state() -> dict[str, torch.Tensor]:
    """The suite's seeded official-layout tensors (see ``tests/official_weights.py``)."""
    return seeded_state_dict()


@pytest.fixture(scope="session")
def synthetic_checkpoint(tmp_path_factory, synthetic_state) -> Path:
    """``synthetic_state`` as an official file ({'state_dict': ...}, legacy format), written once."""
    return write_checkpoint(synthetic_state, tmp_path_factory.mktemp("ckpt") / "synthetic_siammask.pth")


@pytest.fixture(scope="session")
def golden_checkpoint(tmp_path_factory, golden_dir) -> Path:
    """The exact checkpoint the golden data were recorded with (the golden script, seed 4)."""
    out = tmp_path_factory.mktemp("golden_ckpt") / "golden_siammask.pth"
    proc = subprocess.run([sys.executable, str(golden_dir / "make_checkpoint.py"), str(out)],
                          capture_output=True, text=True, check=True)
    assert f"sha256 {GOLDEN_SHA256}" in proc.stdout, proc.stdout
    return out
