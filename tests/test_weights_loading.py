"""Checkpoint loading: every layout the SiamMask weights come in, and every kind of bad file.

The layouts are written from the suite's seeded official-layout tensors (86 MB each, see
``tests/official_weights.py``) once per module; every one must load to exactly the reference
parameters. Bad files must give a one-line CheckpointError that names the file, never a
traceback or a partial load.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from siamtrack import weights
from siamtrack.errors import CheckpointError, SiamtrackError
from siamtrack.weights.loading import load_checkpoint
from tests.official_weights import official_layout, pysot_name, seeded_state_dict, write_checkpoint


@pytest.fixture(scope="module")
def raw_state(synthetic_checkpoint) -> dict[str, torch.Tensor]:
    """The reference tensors under their official names, as stored in the file."""
    return torch.load(synthetic_checkpoint, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def reference(synthetic_checkpoint) -> dict[str, torch.Tensor]:
    """Parameters of the network loaded from the reference file (official layout, legacy format)."""
    return load_checkpoint(synthetic_checkpoint).model.state_dict()


def _write_without_nbt(raw_state, out: Path) -> None:
    stripped = {k: v for k, v in raw_state.items() if not k.endswith("num_batches_tracked")}
    assert len(stripped) == 303
    torch.save(stripped, out, _use_new_zipfile_serialization=False)


def _write_training(raw_state, out: Path) -> None:
    """An official training checkpoint: the weights plus epoch, class name, optimizer state..."""
    optimizer = {"state": {0: {"momentum_buffer": torch.ones(3)}},
                 "param_groups": [{"lr": 0.005, "momentum": 0.9, "params": [0, 1, 2]}]}
    torch.save({"epoch": 19, "arch": "Custom", "state_dict": dict(raw_state), "best_acc": 0.713,
                "optimizer": optimizer, "anchor_cfg": {"stride": 8, "ratios": [0.33, 0.5, 1, 2, 3], "scales": [8]}},
               out)


VARIANTS = {
    "flat-zip": lambda raw, out: write_checkpoint(raw, out, "flat", legacy=False),
    "module-legacy": lambda raw, out: write_checkpoint(raw, out, "module"),
    "state_dict_module-zip": lambda raw, out: write_checkpoint(raw, out, "state_dict_module", legacy=False),
    "pysot-names": lambda raw, out: write_checkpoint(raw, out, "pysot", legacy=False),
    "no-num-batches-tracked": _write_without_nbt,
    "training-extras": _write_training,
}


@pytest.fixture(scope="module")
def variant(tmp_path_factory, raw_state):
    """``variant(name)``: the path of that layout's file, written on first use (deleted after the module)."""
    folder = tmp_path_factory.mktemp("layouts")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            out = folder / f"{name}.pth"
            VARIANTS[name](raw_state, out)
            made[name] = out
        return made[name]

    yield get
    shutil.rmtree(folder)


def assert_same_parameters(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert list(state) == list(reference)
    different = [k for k, ref in reference.items() if state[k].dtype != ref.dtype or not torch.equal(state[k], ref)]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def one_line_error_naming(exc: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(exc.value)
    assert isinstance(exc.value, SiamtrackError)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


# the suite's official layout ------------------------------------------------------------------------


def test_suite_layout_is_the_recorded_official_one(golden_dir):
    """The key list written out in tests/official_weights.py is the one recorded from the official code."""
    recorded = json.loads((golden_dir / "keys_siammask_sharp.json").read_text())["keys"]
    assert [(k, shape) for k, shape, _ in official_layout()] == [(e["key"], tuple(e["shape"])) for e in recorded]
    pysot = json.loads((golden_dir / "keys_pysot_siammask.json").read_text())["keys"]
    assert [pysot_name(e["official_key"]) for e in pysot] == [e["key"] for e in pysot]


def test_seeded_weights_are_deterministic_and_the_official_size(synthetic_state):
    assert len(synthetic_state) == 356
    floats = [v for v in synthetic_state.values() if v.dtype == torch.float32]
    assert len(floats) == 303 and sum(v.numel() for v in floats) == 21_517_764  # the official parameter count
    assert all(torch.equal(a, b) for a, b in zip(seeded_state_dict().values(), synthetic_state.values(), strict=True))
    assert not torch.equal(seeded_state_dict(seed=1)["features.features.conv1.weight"],
                           synthetic_state["features.features.conv1.weight"])


# every layout ------------------------------------------------------------------------------------


def test_reference_is_the_official_network(reference, synthetic_checkpoint):
    loaded = load_checkpoint(synthetic_checkpoint)
    assert loaded.arch == "siammask_sharp"
    assert not loaded.model.training
    assert len(reference) == 356
    # the file's tensors are really in the model, not left at initialisation
    conv1 = torch.load(synthetic_checkpoint, weights_only=True)["state_dict"]["features.features.conv1.weight"]
    assert torch.equal(reference["features.features.conv1.weight"], conv1)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_layout_loads_the_same_parameters(variant, reference, name):
    loaded = load_checkpoint(variant(name))
    assert loaded.arch == "siammask_sharp"
    assert_same_parameters(loaded.model.state_dict(), reference)


def test_layout_files_differ_from_the_reference(variant, synthetic_checkpoint):
    """The layouts are really different files (so the test above compares something)."""
    ref_head = synthetic_checkpoint.read_bytes()[:2]
    assert variant("flat-zip").read_bytes()[:2] == b"PK"  # zip archive
    assert variant("module-legacy").read_bytes()[:2] == ref_head == b"\x80\x02"  # legacy pickle stream
    module_keys = torch.load(variant("module-legacy"), weights_only=True)
    assert all(k.startswith("module.") for k in module_keys)


def test_pysot_file_has_pysot_names(variant):
    keys = list(torch.load(variant("pysot-names"), weights_only=True))
    assert keys[0].startswith("backbone.") and any(k.startswith("refine_head.") for k in keys)


def test_training_checkpoint_keeps_its_metadata(variant):
    loaded = load_checkpoint(variant("training-extras"))
    assert loaded.meta["epoch"] == 19 and loaded.meta["arch"] == "Custom"
    assert loaded.preset is None


# verify and trust on first use ---------------------------------------------------------------


def test_verify_reports_identity(synthetic_checkpoint):
    info = weights.verify(synthetic_checkpoint)
    assert info == {
        "arch": "siammask_sharp",
        "keys": 356,
        "size": synthetic_checkpoint.stat().st_size,
        "sha256": hashlib.sha256(synthetic_checkpoint.read_bytes()).hexdigest(),
    }
    with pytest.raises(CheckpointError, match="expected siammask_lite") as exc:
        weights.verify(synthetic_checkpoint, expected_arch="siammask_lite")
    one_line_error_naming(exc, synthetic_checkpoint)


def test_registry_entries_and_unknown_name():
    names = [e.name for e in weights.list_entries()]
    assert names[:1] == ["siammask-lite"] and {"siammask-davis", "siammask-vot", "siammask-vot-ld",
                                                 "pysot-siammask-r50-l3"} <= set(names)
    assert weights.get_entry("siammask-vot-ld").preset == "vot18"
    with pytest.raises(SiamtrackError, match="unknown model"):
        weights.get_entry("nope")


def registry_with(entry: dict) -> dict:
    base = {"name": "test-model", "file": "test-model.pth", "url": None, "arch": "siammask_sharp", "preset": "davis",
            "size": None, "sha256": None, "license": "test", "source": "test", "description": "test"}
    return {"default": "test-model", "models": [{**base, **entry}]}


def test_first_use_records_the_hash_then_rejects_a_changed_file(tmp_path, monkeypatch, synthetic_checkpoint,
                                                                 variant):
    monkeypatch.setenv("SIAMTRACK_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(weights, "_registry", lambda: registry_with({}))
    dest = weights.local_path("test-model")
    assert dest == tmp_path / "test-model.pth"
    dest.symlink_to(synthetic_checkpoint)
    record_path = tmp_path / weights.HASH_RECORD
    assert not record_path.exists()

    info = weights.check_known_hash("test-model", dest)
    sha = hashlib.sha256(dest.read_bytes()).hexdigest()
    assert info["sha256"] == sha
    assert json.loads(record_path.read_text()) == {"test-model.pth": {"size": dest.stat().st_size, "sha256": sha}}
    assert weights.check_known_hash("test-model", dest) == info  # the same file passes again

    dest.unlink()
    dest.symlink_to(variant("no-num-batches-tracked"))  # the same weights, other bytes
    with pytest.raises(CheckpointError, match="differs from the recorded") as exc:
        weights.check_known_hash("test-model", dest)
    one_line_error_naming(exc, dest)
    assert json.loads(record_path.read_text())["test-model.pth"]["sha256"] == sha  # the record is kept


def test_registry_hash_is_enforced_on_first_use(tmp_path, monkeypatch, synthetic_checkpoint):
    monkeypatch.setenv("SIAMTRACK_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(weights, "_registry", lambda: registry_with({"sha256": "ab" * 32}))
    dest = weights.local_path("test-model")
    dest.symlink_to(synthetic_checkpoint)
    with pytest.raises(CheckpointError, match="differs from the recorded abababababab"):
        weights.check_known_hash("test-model", dest)
    assert not (tmp_path / weights.HASH_RECORD).exists()


def test_known_hash_checks_the_architecture(tmp_path, monkeypatch, synthetic_checkpoint):
    monkeypatch.setenv("SIAMTRACK_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(weights, "_registry", lambda: registry_with({"arch": "siammask_lite"}))
    with pytest.raises(CheckpointError, match="is a siammask_sharp checkpoint, expected siammask_lite"):
        weights.check_known_hash("test-model", synthetic_checkpoint)
    assert not (tmp_path / weights.HASH_RECORD).exists()


# bad files ------------------------------------------------------------------------------------


class Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"echo pwned > '{self.marker}'",)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer,match", [
    ("torch.save", "refused to load: it would import posix.system"),
    ("pickle-2", "refused to load: it would import posix.system"),  # protocol of legacy torch files
    ("pickle-5", None),  # torch never writes this protocol; rejected before the payload is reached
])
def test_code_executing_pickle_is_refused(tmp_path, writer, match):
    path = tmp_path / "evil.pth"
    marker = tmp_path / "marker"
    obj = {"hook": Payload(marker), "state_dict": {"w": torch.zeros(2)}}
    if writer == "torch.save":
        torch.save(obj, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=int(writer[-1]))
    with pytest.raises(CheckpointError, match=match) as exc:
        load_checkpoint(path)
    one_line_error_naming(exc, path)
    assert not marker.exists()
    # the file is a real exploit: an unrestricted load does run the command
    if writer == "torch.save":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.read_text().strip() == "pwned"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_random_bytes(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.pth"
    # raw noise, noise behind a pickle header, and a memo reference to nothing (KeyError inside torch)
    blobs = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (1, 7, 64, 4096)]
    blobs += [b"\x80\x02" + rng.integers(0, 256, 40, dtype=np.uint8).tobytes() for _ in range(200)]
    blobs += [b"\x80\x02h\x05.", b"PK\x03\x04" + bytes(100)]
    for blob in blobs:
        path.write_bytes(blob)
        with pytest.raises(CheckpointError) as exc:
            load_checkpoint(path)
        one_line_error_naming(exc, path)


@pytest.mark.parametrize("zip_format", [False, True], ids=["legacy", "zip"])
def test_every_truncation_of_a_small_checkpoint(tmp_path, zip_format):
    buf = io.BytesIO()
    torch.save({"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 1}, buf,
               _use_new_zipfile_serialization=zip_format)
    full = buf.getvalue()
    path = tmp_path / "cut.pth"
    step = 1 if not zip_format else 5
    for n in range(0, len(full), step):
        path.write_bytes(full[:n])
        with pytest.raises(CheckpointError) as exc:
            load_checkpoint(path)
        one_line_error_naming(exc, path)
    path.write_bytes(full)  # the whole file reads, so the errors above came from the truncation
    with pytest.raises(CheckpointError, match="does not match siammask_sharp"):
        load_checkpoint(path)


@pytest.mark.parametrize("source", ["legacy", "zip"])
def test_truncated_full_checkpoint(tmp_path, synthetic_checkpoint, variant, source):
    src = synthetic_checkpoint if source == "legacy" else variant("flat-zip")
    data = src.read_bytes()
    path = tmp_path / "half.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as exc:
        load_checkpoint(path)
    one_line_error_naming(exc, path)


def test_state_dict_of_another_model(tmp_path):
    path = tmp_path / "linear.pth"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    msg = one_line_error_naming(exc, path)
    assert "303 missing keys" in msg and "features.features.conv1.weight" in msg
    assert "2 unexpected keys (weight, bias)" in msg


def test_wrong_shape(tmp_path, raw_state):
    path = tmp_path / "shape.pth"
    torch.save({**raw_state, "rpn_model.cls.head.3.weight": torch.zeros(8, 256, 1, 1)}, path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    msg = one_line_error_naming(exc, path)
    assert "wrong shape" in msg and "rpn_model.cls.head.3.weight (8, 256, 1, 1) vs (10, 256, 1, 1)" in msg


@pytest.mark.parametrize("obj,match", [
    ([torch.zeros(3), torch.ones(2)], "top level is list"),
    ({"epoch": 3, "best_acc": 0.5}, "no tensors found"),
    ({"state_dict": [torch.zeros(3)]}, "'state_dict' entry is list"),
    ({"arch": "alexnet", "state_dict": {"w": torch.zeros(1)}}, "unknown architecture 'alexnet'"),
])
def test_not_a_checkpoint_structure(tmp_path, obj, match):
    path = tmp_path / "odd.pth"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=match) as exc:
        load_checkpoint(path)
    one_line_error_naming(exc, path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated or corrupt") as exc:
        load_checkpoint(path)
    one_line_error_naming(exc, path)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_no_such_file(tmp_path, kind):
    path = tmp_path / "nothing.pth"
    if kind == "directory":
        path.mkdir()
    with pytest.raises(CheckpointError, match="no such checkpoint file") as exc:
        load_checkpoint(path)
    one_line_error_naming(exc, path)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        weights.verify(path)
