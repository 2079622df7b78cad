"""Checkpoint loading (every official layout, bad files) and the downloader against a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import subprocess
import sys
import threading
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from siamtrack import weights
from siamtrack.errors import CheckpointError, SiamtrackError, WeightsDownloadError
from siamtrack.weights.download import download_file, sha256_file
from siamtrack.weights.loading import load_checkpoint


@pytest.fixture(scope="module")
def reference(synthetic_checkpoint) -> dict[str, torch.Tensor]:
    return load_checkpoint(synthetic_checkpoint).model.state_dict()


def _same(model_sd, ref) -> None:
    for k, v in ref.items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(model_sd[k], v), k


@pytest.mark.parametrize("layout,fmt", [("flat", "zip"), ("module", "legacy"), ("state_dict_module", "zip")])
def test_official_layouts_load_identically(golden_dir, tmp_path, reference, layout, fmt):
    out = tmp_path / f"{layout}.pth"
    subprocess.run([sys.executable, str(golden_dir / "make_checkpoint.py"), str(out), "--layout", layout,
                    "--format", fmt], check=True, capture_output=True)
    loaded = load_checkpoint(out)
    assert loaded.arch == "siammask_sharp"
    _same(loaded.model.state_dict(), reference)


def test_training_checkpoint_without_num_batches_tracked(tmp_path, reference):
    sd = OrderedDict((k, v) for k, v in reference.items() if not k.endswith("num_batches_tracked"))
    path = tmp_path / "train.pth"
    torch.save({"epoch": 20, "arch": "Custom", "state_dict": OrderedDict(("module." + k, v) for k, v in sd.items()),
                "best_acc": 0.5, "optimizer": {"state": {}, "param_groups": [{"lr": 0.01}]},
                "anchor_cfg": {"stride": 8, "ratios": [0.33, 0.5, 1, 2, 3]}}, path,
               _use_new_zipfile_serialization=False)
    _same(load_checkpoint(path).model.state_dict(), reference)


def test_pysot_names_load_identically(golden_dir, tmp_path, reference):
    out = tmp_path / "pysot.pth"
    subprocess.run([sys.executable, str(golden_dir / "make_checkpoint.py"), str(out), "--keys",
                    str(golden_dir / "keys_pysot_siammask.json"), "--layout", "flat"], check=True, capture_output=True)
    _same(load_checkpoint(out).model.state_dict(), reference)


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned-marker",))


def test_bad_files_are_one_line_errors(tmp_path, synthetic_checkpoint, reference, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = {}
    cases["random.pth"] = os.urandom(4096)
    buf = io.BytesIO()
    pickle.dump({"state_dict": Evil()}, buf)
    cases["evil-pickle.pth"] = buf.getvalue()
    cases["empty.pth"] = b""
    data = synthetic_checkpoint.read_bytes()
    cases["truncated-legacy.pth"] = data[: len(data) // 2]
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    zipped = tmp_path / "full.pth"
    torch.save({"state_dict": reference}, zipped)
    (tmp_path / "truncated-zip.pth").write_bytes(zipped.read_bytes()[: zipped.stat().st_size // 2])
    torch.save({"state_dict": Evil()}, tmp_path / "evil.pth")
    torch.save(torch.nn.Linear(3, 4).state_dict(), tmp_path / "other.pth")
    torch.save([torch.zeros(3)], tmp_path / "list.pth")
    wrong = dict(reference)
    wrong["rpn_model.cls.head.3.weight"] = torch.zeros(12, 256, 1, 1)
    torch.save(wrong, tmp_path / "shape.pth")
    expectations = {
        "random.pth": "not a readable checkpoint", "evil.pth": "refused", "evil-pickle.pth": "not a readable",
        "empty.pth": "not a readable checkpoint",
        "truncated-legacy.pth": "not a readable checkpoint", "truncated-zip.pth": "not a readable checkpoint",
        "other.pth": "missing keys", "list.pth": "not a checkpoint", "shape.pth": "wrong shape",
        "absent.pth": "no such checkpoint",
    }
    for name, expected in expectations.items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(tmp_path / name)
        msg = str(info.value)
        assert name in msg and expected in msg and "\n" not in msg, (name, msg)
    assert not (tmp_path / "pwned-marker").exists()
    assert "unexpected keys" in _err(tmp_path / "other.pth") and "rpn_model.cls.head.3.weight" in _err(
        tmp_path / "shape.pth")


def _err(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    return str(info.value)


def test_verify_and_trust_on_first_use(tmp_path, synthetic_checkpoint, monkeypatch):
    monkeypatch.setenv("SIAMTRACK_WEIGHTS", str(tmp_path))
    target = weights.local_path("siammask-vot")
    assert target.parent == tmp_path
    target.write_bytes(synthetic_checkpoint.read_bytes())
    info = weights.check_known_hash("siammask-vot", target)
    assert info["keys"] == 356 and info["sha256"] == sha256_file(synthetic_checkpoint)
    assert "SiamMask_VOT.pth" in (tmp_path / "known_hashes.json").read_text()
    # A different file under the same name is refused from now on.
    sd = torch.load(synthetic_checkpoint, weights_only=True)
    sd["state_dict"]["rpn_model.loc.head.3.bias"] = sd["state_dict"]["rpn_model.loc.head.3.bias"] + 1
    torch.save(sd, target)
    with pytest.raises(CheckpointError, match="differs from the recorded"):
        weights.check_known_hash("siammask-vot", target)


def test_registry_entries_and_unknown_name():
    names = [e.name for e in weights.list_entries()]
    assert names[:1] == ["siammask-lite"] and {"siammask-davis", "siammask-vot", "siammask-vot-ld",
                                                 "pysot-siammask-r50-l3"} <= set(names)
    assert weights.get_entry("siammask-vot-ld").preset == "vot18"
    with pytest.raises(SiamtrackError, match="unknown model"):
        weights.get_entry("nope")


# ---------------------------------------------------------------------------- downloads
class _Server:
    """A tiny HTTP server on 127.0.0.1 with switchable behaviour."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.mode = "ok"
        self.ranges: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                if rng:
                    outer.ranges.append(rng)
                if outer.mode == "404":
                    self.send_error(404, "Not Found")
                    return
                body, status = outer.payload, 200
                if rng and outer.mode != "no-range":
                    start = int(rng.split("=")[1].split("-")[0])
                    body, status = outer.payload[start:], 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.mode == "truncate":
                    self.wfile.write(body[: len(body) // 3])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/file.pth"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = _Server(os.urandom(300_000))
    yield srv
    srv.close()


def test_download_ok_atomic_with_progress(server, tmp_path):
    seen = []
    dest = download_file(server.url, tmp_path / "f.pth", progress=lambda d, t: seen.append((d, t)))
    assert dest.read_bytes() == server.payload and not (tmp_path / "f.pth.part").exists()
    assert seen[-1] == (len(server.payload), len(server.payload)) and seen == sorted(seen)


def test_download_404_and_unreachable(server, tmp_path):
    server.mode = "404"
    with pytest.raises(WeightsDownloadError, match="HTTP 404"):
        download_file(server.url, tmp_path / "f.pth")
    assert not any(tmp_path.iterdir())
    with pytest.raises(WeightsDownloadError, match="cannot reach"):
        download_file("http://127.0.0.1:9/none.pth", tmp_path / "g.pth", timeout=2)


def test_truncated_transfer_resumes(server, tmp_path):
    server.mode = "truncate"
    with pytest.raises(WeightsDownloadError, match="ended early|interrupted"):
        download_file(server.url, tmp_path / "f.pth")
    part = tmp_path / "f.pth.part"
    assert part.exists() and 0 < part.stat().st_size < len(server.payload) and not (tmp_path / "f.pth").exists()
    server.mode = "ok"
    digest = hashlib.sha256(server.payload).hexdigest()
    dest = download_file(server.url, tmp_path / "f.pth", sha256=digest)
    assert dest.read_bytes() == server.payload and server.ranges and server.ranges[-1].startswith("bytes=")


def test_server_ignoring_range_restarts(server, tmp_path):
    (tmp_path / "f.pth.part").write_bytes(b"garbage" * 10)
    server.mode = "no-range"
    dest = download_file(server.url, tmp_path / "f.pth")
    assert dest.read_bytes() == server.payload


def test_corrupt_file_is_rejected(server, tmp_path):
    with pytest.raises(WeightsDownloadError, match="SHA-256 mismatch"):
        download_file(server.url, tmp_path / "f.pth", sha256="0" * 64)
    assert not any(tmp_path.iterdir())


def test_registry_download_verifies_structure_and_explains(server, tmp_path, monkeypatch, synthetic_checkpoint):
    monkeypatch.setenv("SIAMTRACK_WEIGHTS", str(tmp_path))
    with pytest.raises(CheckpointError):
        weights.download("siammask-davis", url=server.url, progress=False)  # random bytes: not a checkpoint
    assert not weights.is_present("siammask-davis") and not list(tmp_path.glob("*.part"))
    server.mode = "404"
    with pytest.raises(WeightsDownloadError) as info:
        weights.download("siammask-davis", url=server.url, progress=False)
    msg = str(info.value)
    assert "SIAMTRACK_WEIGHTS" in msg and "--checkpoint" in msg and str(tmp_path) in msg
    server.mode = "ok"
    server.payload = synthetic_checkpoint.read_bytes()
    path = weights.download("siammask-davis", url=server.url, progress=False)
    assert path == tmp_path / "SiamMask_DAVIS.pth" and weights.is_present("siammask-davis")
