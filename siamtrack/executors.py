"""Where many videos are tracked: in this process, in a pool of local worker processes, or on Ray.

``batch`` and ``eval`` hand an executor a task and a list of items; each item goes through
``task(tracker, item, stopped)`` on some worker, which builds its tracker once (from a
picklable factory) and keeps it for every item it gets. ``stopped()`` turns true once the
executor is asked to stop (Ctrl-C in the parent): a task then ends its video as ``run``
ends one on Ctrl-C. Results come back as ``(index, result)`` in completion order.

Torch and OpenCV each default to a thread per core, so N processes would each start that
many; a worker runs ``threads`` of each instead (by default cores // workers). Ray is
imported only when its executor is chosen.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Protocol

from siamtrack.errors import SiamtrackError

if TYPE_CHECKING:
    from siamtrack.results import ObjectTracker

__all__ = ["EXECUTORS", "Executor", "InlineExecutor", "ProcessExecutor", "RayExecutor", "WorkerLost", "available_cores",
           "default_threads", "make_executor", "set_threads"]

EXECUTORS = ("local", "ray")
Task = Callable[["ObjectTracker", Any, Callable[[], bool]], Any]
TrackerFactory = Callable[[], "ObjectTracker"]
POLL_S = 0.2  # how often a waiting parent looks at its stop flag


class WorkerLost(SiamtrackError):
    """A worker process (or Ray actor) died while it held an item: a crash, not the item's error."""


def available_cores() -> int:
    """Cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_threads(workers: int, cores: int | None = None) -> int:
    """Threads per worker such that workers x threads <= cores (at least one)."""
    return max(1, (cores or available_cores()) // max(workers, 1))


def set_threads(threads: int) -> None:
    """Torch's and OpenCV's thread pools of this process, both to ``threads``."""
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


class Executor(Protocol):
    def map(self, task: Task, items: Sequence[Any],
            on_lost: Callable[[Any, str], Any] | None = None) -> Iterator[tuple[int, Any]]:
        """Every item through ``task``; ``(index, result)`` as each finishes. A task's exception is
        re-raised here; a worker that dies gives ``on_lost(item, message)`` as the result, or
        raises ``WorkerLost`` without ``on_lost``. Once stopped, items not started are left out."""
        ...

    def stop(self) -> None:
        """Ask running tasks to end early (their ``stopped()`` turns true) and start no more."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...


class _Base:
    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing held."""


class InlineExecutor(_Base):
    """One item after another in this process, with a tracker built here (``--workers 1``)."""

    def __init__(self, tracker: ObjectTracker, threads: int | None = None) -> None:
        import cv2
        import torch

        self.tracker = tracker
        self._stopped = False
        self._restore: tuple[int, int] | None = None
        if threads is not None:
            self._restore = (torch.get_num_threads(), cv2.getNumThreads())
            set_threads(threads)
        self.threads = torch.get_num_threads()

    def map(self, task: Task, items: Sequence[Any],
            on_lost: Callable[[Any, str], Any] | None = None) -> Iterator[tuple[int, Any]]:
        for index, item in enumerate(items):
            if self._stopped:
                return
            yield index, task(self.tracker, item, self.stopped)

    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        self._stopped = True

    def close(self) -> None:
        """This process's thread counts back as they were."""
        if self._restore is not None:
            import cv2
            import torch

            torch.set_num_threads(self._restore[0])
            cv2.setNumThreads(self._restore[1])
            self._restore = None


# Local processes -------------------------------------------------------------------------------

_worker: dict[str, Any] = {}  # in a worker process: its factory, tracker and the shared stop event


def _init_worker(factory: TrackerFactory, threads: int, stop: Any) -> None:
    # Ctrl-C reaches every process of the terminal's group; the parent alone decides (through
    # ``stop``), so a worker finishes its video cleanly instead of dying between two items.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_threads(threads)
    _worker.update(factory=factory, tracker=None, stop=stop)


def _in_worker(task: Task, item: Any) -> Any:
    if _worker["tracker"] is None:
        _worker["tracker"] = _worker["factory"]()
    return task(_worker["tracker"], item, _worker["stop"].is_set)


class ProcessExecutor(_Base):
    """A pool of ``workers`` spawned processes, each with its own tracker and ``threads`` threads.

    Spawned, not forked: a fork would copy the parent's torch and decoder threads in whatever
    state they are. Each worker builds its tracker on its first item and keeps it.
    """

    def __init__(self, factory: TrackerFactory, workers: int, threads: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.threads = threads
        self._stop = context.Event()
        self._pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                         initargs=(factory, threads, self._stop))

    def map(self, task: Task, items: Sequence[Any],
            on_lost: Callable[[Any, str], Any] | None = None) -> Iterator[tuple[int, Any]]:
        futures: dict[Future, int] = {self._pool.submit(_in_worker, task, item): i for i, item in enumerate(items)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                if self._stop.is_set():
                    for future in pending:
                        future.cancel()  # only those not started: running ones finish their video
                for future in done:
                    if future.cancelled():
                        continue
                    index = futures[future]
                    try:
                        result = future.result()
                    except BrokenProcessPool as exc:
                        message = f"a worker process died ({exc})"
                        if on_lost is None:
                            raise WorkerLost(message) from None
                        result = on_lost(items[index], message)
                    yield index, result
        finally:
            for future in pending:
                future.cancel()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()  # a task still running (the parent failed) ends at its next frame
        self._pool.shutdown(wait=True, cancel_futures=True)


# Ray ------------------------------------------------------------------------------------------


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SiamtrackError("the Ray executor needs Ray: pip install 'siamtrack[ray]'") from None
    return ray


class RayWorker:
    """A Ray actor's state: its tracker, built once, and a stop flag that ``stop`` sets while
    ``run`` is busy (the actor runs two calls at a time, so that ``stop`` gets through)."""

    def __init__(self, factory: TrackerFactory, threads: int) -> None:
        set_threads(threads)
        self.factory = factory
        self.tracker: Any = None
        self.stopping = threading.Event()

    def ready(self) -> bool:
        """Build the tracker (an unknown model fails here, before any item is handed out)."""
        if self.tracker is None:
            self.tracker = self.factory()
        return True

    def run(self, task: Task, item: Any) -> Any:
        self.ready()
        return task(self.tracker, item, self.stopping.is_set)

    def stop(self) -> None:
        self.stopping.set()


class RayExecutor(_Base):
    """``workers`` Ray actors, each asking for ``threads`` CPUs (and ``gpus`` GPUs), each with its tracker.

    Without ``address`` (and no Ray started in this process) a local Ray instance is started
    and stopped again; with it, the driver joins that cluster. Items go to whichever actor is
    free; an actor that dies is replaced. Outputs are written by the actors, so on a cluster
    they must go to storage that every node can write.
    """

    def __init__(self, factory: TrackerFactory, workers: int, threads: int, *, gpus: float = 0.0,
                 address: str | None = None) -> None:
        ray = self.ray = _import_ray()
        self._owns = not ray.is_initialized()
        if self._owns:
            import logging

            local = {} if address else {"num_cpus": max(available_cores(), workers * threads)}
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                         **local)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise SiamtrackError(f"cannot start or reach Ray{f' at {address}' if address else ''}: {first}") \
                    from None
        self._actor = ray.remote(RayWorker).options(num_cpus=threads, num_gpus=gpus, max_concurrency=2)
        self._args = (factory, threads)
        self.threads = threads
        self._stopped = False
        try:
            self.actors = [self._actor.remote(*self._args) for _ in range(workers)]
            self._get([a.ready.remote() for a in self.actors])
        except BaseException:
            self.close()
            raise

    def _get(self, refs: Any) -> Any:
        """``ray.get`` with a task's own exception (a SiamtrackError: one line) re-raised as itself."""
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, Exception):
                raise cause from None
            raise

    def map(self, task: Task, items: Sequence[Any],
            on_lost: Callable[[Any, str], Any] | None = None) -> Iterator[tuple[int, Any]]:
        todo = deque(enumerate(items))
        idle = list(self.actors)
        running: dict[Any, tuple[int, Any]] = {}
        while running or (todo and not self._stopped):
            while idle and todo and not self._stopped:
                index, item = todo.popleft()
                actor = idle.pop()
                running[actor.run.remote(task, item)] = (index, actor)
            done, _ = self.ray.wait(list(running), num_returns=1, timeout=POLL_S)
            for ref in done:
                index, actor = running.pop(ref)
                try:
                    result = self._get(ref)
                except self.ray.exceptions.RayActorError as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    if on_lost is None:
                        raise WorkerLost(f"a Ray worker died ({first})") from None
                    result = on_lost(items[index], f"a Ray worker died ({first})")
                    self.actors.remove(actor)
                    actor = self._actor.remote(*self._args)
                    self.actors.append(actor)
                idle.append(actor)
                yield index, result

    def stop(self) -> None:
        self._stopped = True
        for actor in self.actors:
            actor.stop.remote()

    def close(self) -> None:
        for actor in getattr(self, "actors", ()):
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        if self._owns:
            self.ray.shutdown()


def make_executor(kind: str, factory: TrackerFactory, *, workers: int = 1, threads: int | None = None,
                  tracker: ObjectTracker | None = None, gpus: float = 0.0,
                  address: str | None = None) -> InlineExecutor | ProcessExecutor | RayExecutor:
    """The executor a command's options ask for.

    ``local`` with one worker tracks in this process with ``tracker`` (or one from
    ``factory``); with more, a process pool. ``threads``: per worker (default: cores // workers).
    """
    if kind not in EXECUTORS:
        raise SiamtrackError(f"unknown executor {kind!r}; choose from {', '.join(EXECUTORS)}")
    if workers < 1:
        raise SiamtrackError(f"workers must be at least 1, not {workers}")
    if kind == "ray":
        return RayExecutor(factory, workers, threads or default_threads(workers), gpus=gpus, address=address)
    if workers == 1:
        return InlineExecutor(tracker if tracker is not None else factory(), threads)
    return ProcessExecutor(factory, workers, threads or default_threads(workers))
