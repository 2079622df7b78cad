"""Atomic writes: the one helper and the four places that replace a file with it."""

from __future__ import annotations

import json
import os

import pytest
import torch

from siamtrack import weights
from siamtrack.atomic import atomic_folder, atomic_path, write_text_atomic
from siamtrack.io import sinks
from siamtrack.train.loop import save_atomic


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_success_replaces_and_failure_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.json"
    write_text_atomic(target, "old")
    for exc in (ValueError("bad"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), atomic_path(target) as tmp:
            tmp.write_text("half")
            raise exc
        assert target.read_text() == "old" and leftovers(tmp_path) == []
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and leftovers(tmp_path) == []


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    """``atomic_folder`` (ONNX exports): a new folder is renamed into place; an existing one gets the new
    files with the marker last and keeps its other files; a failure changes nothing and leaves no temporary."""
    target = tmp_path / "export"
    with pytest.raises(KeyboardInterrupt), atomic_folder(target, "done.json") as tmp:
        (tmp / "graph.onnx").write_text("half")
        raise KeyboardInterrupt
    assert not target.exists() and leftovers(tmp_path) == []
    with atomic_folder(target, "done.json") as tmp:
        (tmp / "graph.onnx").write_text("v1")
        (tmp / "done.json").write_text("1")
    assert sorted(p.name for p in target.iterdir()) == ["done.json", "graph.onnx"]
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ValueError), atomic_folder(target, "done.json") as tmp:
        (tmp / "graph.onnx").write_text("half")
        raise ValueError
    assert (target / "graph.onnx").read_text() == "v1" and leftovers(tmp_path) == []
    with atomic_folder(target, "done.json") as tmp:
        (tmp / "graph.onnx").write_text("v2")
        (tmp / "done.json").write_text("2")
    assert [(target / n).read_text() for n in ("graph.onnx", "done.json", "notes.txt")] == ["v2", "2", "mine"]
    with atomic_folder(target, "done.json", replace=False) as tmp:  # a cache another process completed first
        (tmp / "graph.onnx").write_text("v3")
        (tmp / "done.json").write_text("3")
    assert (target / "graph.onnx").read_text() == "v2" and leftovers(tmp_path) == []


def test_a_checkpoint_that_fails_to_save_leaves_no_temporary(tmp_path):
    with pytest.raises(Exception, match="lambda"):
        save_atomic({"weights": torch.zeros(3), "bad": lambda: 0}, tmp_path / "last.pt")
    assert list(tmp_path.iterdir()) == []


def test_an_exported_checkpoint_that_fails_to_save_leaves_no_temporary(tmp_path, monkeypatch):
    save_atomic({"state_dict": {"w": torch.ones(2)}, "arch": "siammask_lite"}, tmp_path / "src.pt")

    def broken(obj, f, *a, **k):
        with open(f, "wb") as out:
            out.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="No space"):
        weights.export(tmp_path / "src.pt", tmp_path / "out.pth")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.pt"]


def test_the_hash_record_is_not_left_half_written(tmp_path, monkeypatch):
    def no_rename(src, dst):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", no_rename)
    weights._write_record(tmp_path, {"a.pth": "0" * 64})  # losing the record is allowed, a stray file is not
    assert list(tmp_path.iterdir()) == []


def test_tracks_json_interrupted_while_finalising_leaves_the_jsonl_and_no_temporary(tmp_path, monkeypatch):
    records = sinks.TrackRecords(tmp_path / "tracks.jsonl", tmp_path / "tracks.json", {"objects": [{"obj_id": 0}]})
    for i in range(3):
        records.write(i, i / 25, [{"obj_id": 0, "score": 1.0}])
    real, passes = sinks.iter_jsonl, []

    def interrupted(path):
        passes.append(path)
        if len(passes) == 2:  # the pass writing object 0, after tracks.json's header
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(sinks, "iter_jsonl", interrupted)
    with pytest.raises(KeyboardInterrupt):
        records.close({"interrupted": True})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tracks.jsonl"]
    monkeypatch.setattr(sinks, "iter_jsonl", real)
    sinks.finalise_tracks(tmp_path / "tracks.jsonl", tmp_path / "tracks.json")
    assert len(json.loads((tmp_path / "tracks.json").read_text())["objects"]["0"]) == 3
