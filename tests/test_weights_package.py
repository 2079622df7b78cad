"""siamtrack as installed software: the wheel and the sdist carry the shipped models (siammask-nano
with NanoTrack's licence and NOTICE), an installed wheel tracks with them from another folder with
no network, and every declared dependency is used.

The wheel is built from a copy of the package sources with the setuptools already installed (no
build isolation, so no network), and "installed" by unpacking it: a pure-Python wheel is a zip of
what pip would put in site-packages.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from siamtrack import weights
from siamtrack.weights.download import sha256_file

REPO = Path(__file__).resolve().parents[1]
MODEL = "siamtrack/weights/siammask-lite.pt"
NANO = "siamtrack/weights/siammask-nano.pt"
# NanoTrack v3's Apache-2.0 weights inside siammask-nano.pt: their licence and NOTICE go where it goes
NANO_TERMS = ("siamtrack/weights/LICENSE-NanoTrack", "siamtrack/weights/NOTICE")
# declared distribution -> the module it provides
IMPORT_NAMES = {"opencv-python": "cv2", "pillow": "PIL", "imageio-ffmpeg": "imageio_ffmpeg"}


def _build(kind: str, out: Path) -> Path:
    """Build a wheel or sdist of a copy of the sources (what `pip wheel .` builds from) into ``out``."""
    pytest.importorskip("setuptools")
    src = out / "src"
    shutil.copytree(REPO / "siamtrack", src / "siamtrack", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    dist = out / "dist"
    code = (f"import setuptools.build_meta as b; print(b.build_{kind}({str(dist)!r}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dist / proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return _build("wheel", tmp_path_factory.mktemp("wheel"))


def test_the_wheel_carries_the_registry_and_the_default_model(wheel):
    entry = weights.get_entry(weights.default_name())
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert {MODEL, "siamtrack/weights/registry.json"} <= names
        info = zf.getinfo(MODEL)
        assert info.file_size == entry.size
        assert not [n for n in names if n.startswith("weights/") or n.endswith((".pth", ".optim.pt"))]
        registry = json.loads(zf.read("siamtrack/weights/registry.json"))
        assert registry["default"] == entry.name
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = re.findall(r"^Requires-Dist: ([A-Za-z0-9_.-]+)", metadata, re.M)
    assert "imageio-ffmpeg" in requires and "imageio" not in requires


def test_the_wheel_carries_siammask_nano_with_nanotracks_licence_and_notice(wheel):
    entry = weights.get_entry("siammask-nano")
    with zipfile.ZipFile(wheel) as zf:
        assert zf.getinfo(NANO).file_size == entry.size
        licence, notice = (zf.read(name).decode() for name in NANO_TERMS)
    assert "Apache License" in licence and "Version 2.0" in licence
    assert "HonglinChu/SiamTrackers" in notice and "nanotrackv3.pth" in notice and "siammask-nano.pt" in notice
    assert "Apache-2.0" in entry.license and "NanoTrack" in entry.source


def test_the_sdist_carries_the_default_model(tmp_path):
    sdist = _build("sdist", tmp_path)
    with tarfile.open(sdist) as tf:
        names = tf.getnames()
    assert all(any(n.endswith("/" + want) for n in names) for want in (MODEL, NANO, *NANO_TERMS))


@pytest.mark.slow
def test_an_installed_wheel_tracks_offline_from_another_folder(wheel, tmp_path):
    site = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "mine").mkdir(parents=True)
    script = """
import json, siamtrack
from siamtrack import weights
from siamtrack.io.synthetic import frames
from siamtrack.tracker import Tracker
from siamtrack.api import from_pretrained
entry, path = weights.resolve()
tracker = from_pretrained(device="cpu", precision="fp32")
clip = list(frames(6, size=(320, 240)))
tracker.init(clip[0].image, clip[0].box)
areas = [int(tracker.track(f.image)[0].mask.sum()) for f in clip[1:]]
nano = from_pretrained("siammask-nano", device="cpu", precision="fp32")
nano.init(clip[0].image, clip[0].box)
nano_areas = [int(nano.track(f.image)[0].mask.sum()) for f in clip[1:]]
print(json.dumps({"module": siamtrack.__file__, "checkout": str(weights._checkout_dir()), "model": str(path),
                  "nano": str(weights.resolve("siammask-nano")[1]), "nano_source": nano.mask_source,
                  "dirs": [str(d) for d in weights.search_dirs()], "areas": areas, "nano_areas": nano_areas}))
"""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(PYTHONPATH=str(site), HOME=str(tmp_path / "home"), SIAMTRACK_WEIGHTS=str(elsewhere / "mine"),
               http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9", no_proxy="", OMP_NUM_THREADS="2",
               PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["module"].startswith(str(site))  # the unpacked wheel, not the checkout
    assert got["checkout"] == "None"
    assert got["model"] == str(site / MODEL)  # found despite $SIAMTRACK_WEIGHTS naming another folder
    assert got["dirs"][0] == str(elsewhere / "mine") and got["dirs"][-1] == str(site / "siamtrack" / "weights")
    assert all(a > 500 for a in got["areas"]), got["areas"]  # a mask on every frame
    assert got["nano"] == str(site / NANO) and got["nano_source"] == "network"
    assert all(a > 500 for a in got["nano_areas"]), got["nano_areas"]
    assert sha256_file(site / MODEL) == weights.get_entry("siammask-lite").sha256


def _imports() -> set[str]:
    found = set()
    for path in (REPO / "siamtrack").rglob("*.py"):
        found |= set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_][A-Za-z0-9_]*)", path.read_text(), re.M))
    return found


def test_every_declared_dependency_is_imported():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = [re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0].lower() for d in deps]
    modules = _imports()
    unused = [n for n in names if IMPORT_NAMES.get(n, n.replace("-", "_")) not in modules]
    assert not unused, f"declared but never imported: {unused}"
