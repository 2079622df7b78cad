"""Many videos, each tracked into ``run``'s outputs: the manifest, the per-entry task, the summary.

A manifest is JSON Lines, one entry a line: ``source`` (video file, image folder or glob;
relative to the manifest's folder), ``bbox`` (``[x, y, w, h]`` boxes, one per object),
optional ``name`` (the entry's output folder), ``start``, ``max_frames`` and ``keyframes`` (a
``siamtrack.keyframes`` JSON or CSV file, relative to the manifest's folder). It is read
whole before any work starts, so a malformed line costs nothing.

Every entry goes through ``siamtrack.runs.track_to_folder``, the code path of ``run``, into
``OUT/<name>/``, on whichever worker an executor gives it. ``OUT/batch.json`` lists each
entry with its status; it is rewritten as entries finish, so a rerun of the same batch knows
which entries are done: an entry is skipped when the summary says it was done with the same
entry and options and its ``tracks.json`` is final (not interrupted, the same frame count).
Everything else, interrupted and failed entries included, is tracked again.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from siamtrack.atomic import write_text_atomic
from siamtrack.errors import SiamtrackError
from siamtrack.keyframes import Keyframe, check_keyframes, keyframe_schedule, read_keyframes
from siamtrack.runs import RUN_OUTPUTS, OutDir, safe_name, track_to_folder
from siamtrack.stream import STOP_SIGNALS

if TYPE_CHECKING:
    from siamtrack.executors import Executor

__all__ = ["SCHEMA", "STATUSES", "SUMMARY", "BatchResult", "Entry", "Job", "Record", "default_name", "read_manifest",
           "run_batch", "track_entry"]

SCHEMA = "siamtrack-batch/1"
SUMMARY = "batch.json"
# done: tracked to the end; skipped: done by an earlier run; failed: an error (the entry's `error`);
# interrupted: stopped part-way (Ctrl-C), outputs finalised for the frames done; pending: not started.
STATUSES = ("done", "skipped", "failed", "interrupted", "pending")
KEYS = ("source", "bbox", "name", "start", "max_frames", "keyframes")
SAVE_EVERY_S = 2.0  # the summary is rewritten at most this often while entries finish
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Entry:
    """One manifest line: where the frames are, the boxes, and the output folder name."""

    line: int
    source: str  # as the manifest gives it
    path: str  # the source resolved against the manifest's folder
    boxes: tuple[Box, ...]
    name: str
    start: int = 0
    max_frames: int | None = None
    keyframes: tuple[Keyframe, ...] = ()

    def spec(self) -> dict[str, Any]:
        """What decides the entry's outputs (compared with the summary's on a rerun; a changed
        keyframe file changes it)."""
        spec: dict[str, Any] = {"source": self.path, "bbox": [list(b) for b in self.boxes], "start": self.start,
                                "max_frames": self.max_frames}
        if self.keyframes:
            spec["keyframes"] = [[k.frame, k.obj_id, *k.box] for k in self.keyframes]
        return spec


def _fail(where: str, line: int, message: str) -> SiamtrackError:
    return SiamtrackError(f"{where} line {line}: {message}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _boxes(value: Any) -> tuple[Box, ...] | None:
    """``[x, y, w, h]`` or a list of them, with positive sides; None when it is neither."""
    if isinstance(value, list) and len(value) == 4 and all(_number(v) for v in value):
        value = [value]
    if not isinstance(value, list) or not value:
        return None
    boxes = []
    for box in value:
        if not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)) or min(box[2:]) <= 0:
            return None
        boxes.append(tuple(float(v) for v in box))
    return tuple(boxes)  # type: ignore[return-value]


def _folder_name(value: Any) -> bool:
    return (isinstance(value, str) and value.strip() == value and value not in ("", ".", "..", SUMMARY)
            and not any(ch in value for ch in "/\\\0"))


def default_name(path: str) -> str:
    """An output folder name from a (resolved) source: a video's stem, a folder's or a glob's folder name."""
    p = Path(path)
    while p.name and any(ch in p.name for ch in "*?["):
        p = p.parent
    return safe_name(p.name if p.is_dir() or not p.suffix else p.stem)


def _parse(text: str, line: int, where: str, base: Path) -> dict[str, Any]:
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(where, line, f"not valid JSON ({exc.msg}, column {exc.colno})") from None
    if not isinstance(row, dict):
        raise _fail(where, line, "expected a JSON object like {\"source\": ..., \"bbox\": [[x, y, w, h]]}")
    unknown = sorted(set(row) - set(KEYS))
    if unknown:
        raise _fail(where, line, f"unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    source = row.get("source")
    if not isinstance(source, str) or not source.strip():
        raise _fail(where, line, "'source' must be a video file, image folder or glob (a non-empty string)")
    boxes = _boxes(row.get("bbox"))
    if boxes is None:
        raise _fail(where, line, "'bbox' must be a list of [x, y, w, h] boxes (finite numbers, w and h > 0)")
    start, max_frames = row.get("start", 0), row.get("max_frames")
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise _fail(where, line, "'start' must be a whole number >= 0")
    if max_frames is not None and (not isinstance(max_frames, int) or isinstance(max_frames, bool) or max_frames < 1):
        raise _fail(where, line, "'max_frames' must be a whole number >= 1")
    name = row.get("name")
    if name is not None and not _folder_name(name):
        raise _fail(where, line, f"'name' must be a folder name (no / or \\, not . or .. or {SUMMARY})")
    path = Path(source).expanduser()
    path = path if path.is_absolute() else base / path
    keyframes: tuple[Keyframe, ...] = ()
    if row.get("keyframes") is not None:
        if not isinstance(row["keyframes"], str) or not row["keyframes"].strip():
            raise _fail(where, line, "'keyframes' must be a JSON or CSV file (a non-empty string)")
        kf_path = Path(row["keyframes"]).expanduser()
        try:
            keyframes = tuple(read_keyframes(kf_path if kf_path.is_absolute() else base / kf_path))
            check_keyframes(list(keyframes), len(boxes), start, None)
        except SiamtrackError as exc:
            raise _fail(where, line, str(exc)) from None
    return {"line": line, "source": source, "path": str(path), "boxes": boxes, "name": name, "start": start,
            "max_frames": max_frames, "keyframes": keyframes}


def read_manifest(manifest: str | Path) -> list[Entry]:
    """The entries of a JSON Lines manifest (blank lines ignored), each with a unique folder name.

    A malformed line raises a one-line error naming it. Entries without ``name`` take their
    source's name; repeated names get ``-2``, ``-3``, ... in manifest order, so a rerun of the
    same manifest gives every entry the same folder.
    """
    manifest = Path(manifest)
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SiamtrackError(f"cannot read {manifest} ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise SiamtrackError(f"{manifest} is not UTF-8 text (JSON Lines)") from None
    base = manifest.resolve().parent
    rows = [_parse(text, n, manifest.name, base) for n, text in enumerate(lines, 1) if text.strip()]
    if not rows:
        raise SiamtrackError(f"{manifest} holds no entries (one JSON object a line)")
    taken: dict[str, int] = {}
    for row in rows:
        if row["name"] is not None:
            if row["name"] in taken:
                raise _fail(manifest.name, row["line"], f"name {row['name']!r} is already used on line "
                                                        f"{taken[row['name']]}")
            taken[row["name"]] = row["line"]
    for row in rows:
        if row["name"] is None:
            base_name = name = default_name(row["path"])
            k = 1
            while name in taken or name == SUMMARY:
                k += 1
                name = f"{base_name}-{k}"
            taken[name] = row["line"]
            row["name"] = name
    return [Entry(**row) for row in rows]


# One entry (runs in a worker) -------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What a worker gets for one entry: the entry, its output folder and which outputs to write."""

    entry: Entry
    folder: str
    video: bool = True
    masks: bool = True


@dataclass
class Record:
    """How one entry ended, as ``batch.json`` lists it."""

    name: str
    line: int
    source: str
    status: str
    error: str | None = None
    frames: int = 0
    fps: float = 0.0  # tracking speed (frames after the first, per second)
    seconds: float = 0.0  # the entry's wall time: opening the source to finalised outputs
    warnings: list[str] = field(default_factory=list)
    signal: int | None = None  # SIGTERM or SIGHUP that stopped a worker's entry
    spec: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, entry: Entry, status: str, **values: Any) -> Record:
        return cls(entry.name, entry.line, entry.source, status, spec=_plain(entry.spec()), **values)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["fps"], out["seconds"] = round(self.fps, 3), round(self.seconds, 3)
        for key in ("error", "signal"):
            if out[key] is None:
                del out[key]
        if not out["warnings"]:
            del out["warnings"]
        return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def track_entry(tracker: Any, job: Job, stopped: Callable[[], bool]) -> Record:
    """Track one entry into ``job.folder`` as ``run`` would; every error becomes a failed record.

    ``stopped()`` is looked at before the entry starts (then nothing is written) and after
    each frame (then the outputs are finalised for the frames done, as on Ctrl-C).
    """
    from siamtrack.io.sources import open_source

    entry = job.entry
    if stopped():
        return Record.of(entry, "pending")
    notes: list[str] = []

    def check(_frame: Any, _results: list) -> None:
        if stopped():
            raise KeyboardInterrupt

    t0 = time.perf_counter()
    try:
        src = open_source(entry.path)
        check_keyframes(list(entry.keyframes), len(entry.boxes), entry.start, src.expected(entry.start,
                                                                                          entry.max_frames))
        out_dir = OutDir(job.folder, entry.name, overwrite=True, owned=RUN_OUTPUTS)
        summary = track_to_folder(tracker, src, src.frames(entry.start, entry.max_frames), list(entry.boxes),
                                  out_dir, source_label=entry.path, video=job.video, masks=job.masks, on_frame=check,
                                  warn=notes.append, keyframes=keyframe_schedule(list(entry.keyframes)) or None)
    except SiamtrackError as exc:
        return Record.of(entry, "failed", error=_first_line(exc), seconds=time.perf_counter() - t0, warnings=notes)
    except Exception as exc:  # a bad entry must not stop the others; the message says what broke
        return Record.of(entry, "failed", error=f"{type(exc).__name__}: {_first_line(exc)}",
                         seconds=time.perf_counter() - t0, warnings=notes)
    return Record.of(entry, "interrupted" if summary.interrupted else "done", frames=summary.frames, fps=summary.fps,
                     seconds=time.perf_counter() - t0, warnings=notes, signal=summary.signal)


# The batch (runs in the parent) ------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples as lists), so that it compares with a stored one."""
    return json.loads(json.dumps(value))


def _previous(path: Path) -> dict[str, Any]:
    """The summary of an earlier run into the same folder, or {} (none, or unreadable)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) and doc.get("schema") == SCHEMA else {}


def _complete(job: Job, before: dict[str, Any] | None) -> bool:
    """Whether an earlier run finished this entry with the same spec and left final outputs."""
    if not before or before.get("status") not in ("done", "skipped") or before.get("spec") != _plain(job.entry.spec()):
        return False
    folder = Path(job.folder)
    try:
        meta = json.loads((folder / "tracks.json").read_text())["meta"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (meta.get("interrupted") is False and meta.get("frames") == before.get("frames")
            and not (folder / "tracks.jsonl").exists() and (not job.video or (folder / "annotated.mp4").is_file())
            and (not job.masks or (folder / "masks").is_dir()))


@dataclass
class BatchResult:
    """The records of every entry (manifest order), how the batch ended, and its speed."""

    records: list[Record]
    summary: Path  # batch.json
    seconds: float = 0.0
    interrupted: bool = False
    signal: int | None = None

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    @property
    def frames(self) -> int:
        """Frames tracked by this run (entries skipped as done before are not counted)."""
        return sum(r.frames for r in self.records if r.status in ("done", "interrupted"))

    @property
    def fps(self) -> float:
        """Frames per second over the whole batch: every frame tracked, by all workers, per wall second."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 when an entry failed, 128 + the signal when stopped."""
        if self.interrupted:
            return 128 + (self.signal or signal.SIGINT)
        return 1 if self.count("failed") else 0


@contextlib.contextmanager
def _stop_requests(stop: Callable[[], None], got: dict[str, int]) -> Iterator[None]:
    """Within the block, the first Ctrl-C (SIGTERM, SIGHUP) calls ``stop`` and is recorded in
    ``got``; a second one raises KeyboardInterrupt, to quit without waiting for the running entries."""
    previous: dict[int, Any] = {}

    def handler(signum: int, _frame: Any) -> None:
        if got:
            raise KeyboardInterrupt
        got["signal"] = signum
        stop()

    try:
        for sig in (signal.SIGINT, *STOP_SIGNALS):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: signals stay as they are
        previous.clear()
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_batch(entries: Sequence[Entry], out: str | Path, executor: Executor, *, video: bool = True, masks: bool = True,
              options: dict[str, Any] | None = None, meta: dict[str, Any] | None = None,
              on_record: Callable[[Record], None] | None = None, since: float | None = None) -> BatchResult:
    """Track every entry not already complete in ``out`` through ``executor``; write ``out/batch.json``.

    ``options``: what else decides the outputs (model, precision, ...); a rerun with other
    options tracks every entry again. ``meta`` goes into the summary as is. ``on_record`` sees
    each entry's record as it is known (skipped ones first). ``since``: the ``time.perf_counter()``
    the batch's seconds count from (default now; a caller passes when it started its workers,
    so that their start-up counts). The first Ctrl-C (or SIGTERM) stops the batch: running
    entries are finalised as ``run`` finalises on Ctrl-C, entries not started stay ``pending``,
    the summary is written, and the result says ``interrupted``.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SiamtrackError(f"cannot create {out} ({exc.strerror or exc})") from None
    options = _plain({**(options or {}), "video": video, "masks": masks})
    summary_path = out / SUMMARY
    previous = _previous(summary_path)
    before = {e.get("name"): e for e in previous.get("entries", [])} if previous.get("options") == options else {}
    jobs = [Job(e, str(out.absolute() / e.name), video, masks) for e in entries]  # workers may run elsewhere
    records = [Record.of(e, "pending") for e in entries]
    todo: list[int] = []
    for i, job in enumerate(jobs):
        old = before.get(job.entry.name)
        if _complete(job, old):
            records[i] = Record.of(job.entry, "skipped", frames=old["frames"], fps=old.get("fps", 0.0),
                                   seconds=old.get("seconds", 0.0))
            if on_record is not None:
                on_record(records[i])
        else:
            todo.append(i)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter() if since is None else since
    result = BatchResult(records, summary_path)

    def save() -> None:
        result.seconds = time.perf_counter() - t0
        doc = {"schema": SCHEMA, **(meta or {}), "out": str(out.resolve()), "options": options, "started": started,
               "seconds": round(result.seconds, 3), "interrupted": result.interrupted,
               "counts": {s: result.count(s) for s in STATUSES}, "frames": result.frames,
               "fps": round(result.fps, 3)}
        head = json.dumps(doc, indent=1, allow_nan=False)[:-2]  # without the closing "\n}"
        rows = ",\n".join("  " + json.dumps(r.to_dict(), allow_nan=False) for r in records)  # an entry a line
        write_text_atomic(summary_path, f'{head},\n "entries": [\n{rows}\n ]\n}}\n')

    def lost(job: Job, message: str) -> Record:
        return Record.of(job.entry, "failed", error=message)

    saved = time.perf_counter()
    got: dict[str, int] = {}
    try:
        with _stop_requests(executor.stop, got):
            for k, record in executor.map(track_entry, [jobs[i] for i in todo], on_lost=lost):
                records[todo[k]] = record
                if record.status == "interrupted" and not got:  # a signal reached the worker itself
                    got["signal"] = record.signal or signal.SIGINT
                    executor.stop()
                if on_record is not None:
                    on_record(record)
                if time.perf_counter() - saved > SAVE_EVERY_S:
                    save()
                    saved = time.perf_counter()
    finally:
        result.interrupted, result.signal = bool(got), got.get("signal")
        save()
    return result
