"""``run``'s outputs for one source, as a library: the output folder, the ``tracks.json``
metadata, and the streaming loop into them. ``run``, ``demo`` and the headless ``webcam``
call it once; ``batch`` once per manifest entry, in whatever process tracks that entry,
so every entry holds exactly what ``run`` writes.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from siamtrack.errors import SiamtrackError
from siamtrack.io.sources import Frame
from siamtrack.stream import Progress, Start, StreamSummary, track_stream

__all__ = ["RUN_OUTPUTS", "OutDir", "new_run_dir", "run_meta", "safe_name", "track_to_folder"]

from siamtrack.choices import DATASET_FORMATS

# what a run writes (and --overwrite replaces): the dataset of --export FORMAT goes to <out>/<FORMAT>/
RUN_OUTPUTS = ("annotated.mp4", "masks", "tracks.json", "tracks.jsonl", *DATASET_FORMATS)


def safe_name(name: str) -> str:
    """A folder name from a source name (letters, digits, ``._-``)."""
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "run"


def new_run_dir(name: str, root: Path = Path("runs")) -> Path:
    """``runs/<name>``, or ``runs/<name>2``, ``runs/<name>3``... whichever is free now (never reused)."""
    base = root / name
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{name}{n}"
    return candidate


class OutDir:
    """Where a command will write, checked up front but created only once there is something to write.

    Without ``--out``: a new numbered folder ``runs/<name>``, ``runs/<name>2``, ... claimed
    atomically, so concurrent runs never share one. With ``--out``: that folder, which must
    be empty unless ``overwrite``; then the outputs a run writes (``owned``) are replaced,
    nothing else in it is touched.
    """

    def __init__(self, out: str | Path | None, name: str, overwrite: bool, *, owned: Sequence[str] = (),
                 root: Path = Path("runs")) -> None:
        self.requested = Path(out) if out is not None else None
        self.name = safe_name(name)
        self.overwrite = overwrite
        self.owned = tuple(owned)
        self.root = root
        self.path: Path | None = None
        p = self.requested
        if p is not None:
            if p.exists() and not p.is_dir():
                raise SiamtrackError(f"{p} exists and is not a folder")
            if p.is_dir() and any(p.iterdir()) and not overwrite:
                raise SiamtrackError(f"{p} already holds files; pass --overwrite to write into it")

    def create(self) -> Path:
        try:
            if self.requested is None:
                self.path = self._claim()
            else:
                self.path = self.requested
                self.path.mkdir(parents=True, exist_ok=True)
                for name in self.owned:
                    target = self.path / name
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target)
                    elif target.exists() or target.is_symlink():
                        target.unlink()
            probe = self.path / ".siamtrack-write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            where = self.path or self.requested or self.root
            raise SiamtrackError(f"cannot write to {where} ({exc.strerror or exc})") from None
        return self.path

    def _claim(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            candidate = new_run_dir(self.name, self.root)
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue  # taken between the look and the mkdir by another run


def run_meta(tracker: Any, src: Any, source_label: str, boxes: list[tuple[float, ...]], start: int) -> dict:
    """What tracks.json says about the run: source, model, preset, versions, fps, and where masks come
    from (``mask_source``: ``network``, or ``box`` for a box-only model, whose masks are its filled boxes)."""
    import platform

    import cv2
    import numpy as np

    from siamtrack import __version__

    versions = {"siamtrack": __version__, "python": platform.python_version(), "numpy": np.__version__,
                "opencv": cv2.__version__}
    try:  # absent, image folders still track (without annotated.mp4: --no-video)
        import imageio_ffmpeg

        versions["imageio-ffmpeg"] = imageio_ffmpeg.__version__
    except ImportError:
        versions["imageio-ffmpeg"] = None
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    preset = tracker.preset.to_dict() if hasattr(tracker.preset, "to_dict") else str(tracker.preset)
    return {"source": source_label, "source_name": src.name, "fps": src.fps, "size": list(src.size),
            "rotation": getattr(src, "rotation", 0), "start": start,
            "model": tracker.model_name, "arch": tracker.arch, "preset": preset,
            "precision": tracker.precision, "backend": getattr(tracker, "backend", None),
            "device": str(tracker.device), "mask_source": getattr(tracker, "mask_source", None),
            "versions": versions,
            "objects": [{"obj_id": i, "init_box": [round(v, 3) for v in b]} for i, b in enumerate(boxes)]}


def track_to_folder(tracker: Any, src: Any, frames: Iterator[Frame], boxes: Sequence, out_dir: OutDir, *,
                    source_label: str, video: bool = True, masks: bool = True, first: Frame | None = None,
                    progress: Progress | None = None, on_frame: Callable[[Frame, list], Any] | None = None,
                    warn: Callable[[str], None] | None = None, export: str | None = None, dataset: Any = None,
                    keyframes: Mapping[int, Sequence[tuple[int, Any]]] | None = None) -> StreamSummary:
    """Track ``frames`` of ``src`` into ``run``'s outputs (annotated.mp4, masks/, tracks.json and,
    with ``export``, a training set of that format in ``<out>/<export>/``, made with ``dataset``,
    a ``siamtrack.io.labels.DatasetOptions``). ``keyframes``: as ``track_stream`` takes them.

    The folder is created (its earlier run outputs replaced) only once the tracker has
    accepted the boxes. Ctrl-C, SIGTERM or ``on_frame`` raising KeyboardInterrupt stop the
    loop; the outputs are then finalised for the frames done (``summary.interrupted``).
    """
    from siamtrack.io.sinks import RunOutputs

    def open_outputs(start: Start) -> RunOutputs:
        path = out_dir.create()
        labels = None
        if export is not None:
            from siamtrack.io.labels import DatasetOptions, open_dataset
            from siamtrack.keyframes import object_count

            labels = open_dataset(export, path / export, start.size, object_count(len(start.obj_ids), keyframes),
                                  dataset or DatasetOptions(), video=safe_name(src.name), fps=src.fps)
        return RunOutputs(path, run_meta(tracker, src, source_label, start.boxes, start.first.index), fps=src.fps,
                          size=start.size, video=video, masks=masks, labels=labels)

    options: dict[str, Any] = {} if warn is None else {"warn": warn}
    return track_stream(tracker, frames, boxes, open_outputs, first=first, progress=progress, on_frame=on_frame,
                        keyframes=keyframes, **options)
