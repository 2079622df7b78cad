"""Trackers and tasks for tests whose work runs in spawned worker processes: those import this
module by name, so everything here is module-level (picklable by reference)."""

from __future__ import annotations

import os
import time
from typing import Any

from siamtrack.io.synthetic import OracleTracker

LONG_N, SIZE = 80, (160, 120)
SLOW_S = 0.03  # per frame: an 80-frame entry takes about 2.5 s, long enough to interrupt part-way


class SlowOracle(OracleTracker):
    """The oracle of the seed-0 clip of ``LONG_N`` frames, at a pace a test can interrupt."""

    def track(self, frame: Any, **kw: Any) -> list:
        time.sleep(SLOW_S)
        return super().track(frame, **kw)


def slow_oracle(*_args: Any, **_kwargs: Any) -> SlowOracle:
    """Stands in for ``siamtrack.commands._common.make_tracker`` (same arguments, all ignored)."""
    return SlowOracle(LONG_N, SIZE)


def no_tracker() -> None:
    """A factory for tasks that need no tracker."""


def times_ten_or_crash(_tracker: Any, item: int, _stopped: Any) -> int:
    """A task whose item 2 kills its worker process outright (as a segfaulting decoder would)."""
    if item == 2:
        time.sleep(0.5)  # let the other items be handed out first
        os._exit(3)
    return item * 10
