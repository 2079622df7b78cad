"""Whether a tracked object is still in view: a small, pure state machine with hysteresis.

SiamMask always answers with a box and a mask, even when its object is hidden. The machine
reads the evidence the network already gives for one object in one frame and says
``tracked``, ``uncertain`` or ``lost``:

* a normal step's score below ``lost_score`` is a miss; ``lost_after`` misses in a row (or a
  non-finite network output, at once) make the object ``lost``; a score below
  ``uncertain_score`` makes it ``uncertain`` (mask and box still given, flagged), and it
  returns to ``tracked`` after two frames in a row at or above ``uncertain_score``;
* while ``lost``, the tracker searches wider (see ``Tracker``) and hands the machine its best
  candidate: only a candidate scoring at least ``found_score`` on ``found_after`` frames in a
  row, each within one target size of the previous one, brings the object back. A distractor
  that peaks once, or candidates that jump around the frame, do not.

No I/O, no network: evidence in, state out, so every transition is unit-testable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["LOST", "STATES", "TRACKED", "UNCERTAIN", "Evidence", "StateMachine"]

TRACKED, UNCERTAIN, LOST = "tracked", "uncertain", "lost"
STATES = (TRACKED, UNCERTAIN, LOST)
RECOVER_AFTER = 2  # frames in a row at or above uncertain_score to leave "uncertain"


@dataclass(frozen=True)
class Evidence:
    """What one frame says about one object.

    ``score``: the chosen candidate's classification score (a normal step's pick, or while
    lost the best re-detection candidate); ``center``: where that candidate is (frame pixels);
    ``finite``: whether the network's outputs for this object were all finite.
    """

    score: float
    center: tuple[float, float] | None = None
    finite: bool = True


class StateMachine:
    """Per-object state from per-frame evidence; see the module docstring for the rules."""

    def __init__(self, lost_score: float, uncertain_score: float, lost_after: int, found_score: float,
                 found_after: int) -> None:
        if not 0 <= lost_score <= uncertain_score <= 1:
            raise ValueError(f"need 0 <= lost_score ({lost_score}) <= uncertain_score ({uncertain_score}) <= 1")
        if lost_after < 1 or found_after < 1:
            raise ValueError("lost_after and found_after are at least 1")
        self.lost_score = lost_score
        self.uncertain_score = uncertain_score
        self.lost_after = lost_after
        self.found_score = found_score
        self.found_after = found_after
        self.state = TRACKED
        self._misses = 0
        self._good = 0
        self._streak = 0
        self._last: tuple[float, float] | None = None

    def reset(self) -> None:
        """Back to ``tracked`` (a new initialisation)."""
        self.state = TRACKED
        self._misses = self._good = self._streak = 0
        self._last = None

    def observe(self, ev: Evidence) -> str:
        """The state after a normal tracking step (the object was not lost before it)."""
        if not ev.finite or not math.isfinite(ev.score):
            return self._lose()
        if ev.score < self.lost_score:
            self._misses += 1
            self._good = 0
            if self._misses >= self.lost_after:
                return self._lose()
            self.state = UNCERTAIN
            return self.state
        self._misses = 0
        if ev.score < self.uncertain_score:
            self._good = 0
            self.state = UNCERTAIN
        elif self.state == UNCERTAIN:
            self._good += 1
            if self._good >= RECOVER_AFTER:
                self.state = TRACKED
        return self.state

    def search(self, ev: Evidence, target_size: float) -> bool:
        """While lost: the best re-detection candidate of this frame; True when it is confirmed.

        Confirmation needs ``found_after`` candidates in a row at or above ``found_score``,
        each within ``target_size`` pixels of the one before; the state is then ``tracked``.
        """
        ok = ev.finite and math.isfinite(ev.score) and ev.score >= self.found_score and ev.center is not None
        if not ok:
            self._streak, self._last = 0, None
            return False
        near = self._last is not None and math.dist(ev.center, self._last) <= target_size
        self._streak = self._streak + 1 if near else 1
        self._last = ev.center
        if self._streak >= self.found_after:
            self.reset()
            return True
        return False

    def _lose(self) -> str:
        self.state = LOST
        self._misses = self._good = self._streak = 0
        self._last = None
        return self.state


def finite(*arrays: np.ndarray) -> bool:
    """Whether every value of every array is finite (a NaN/inf network output makes an object lost)."""
    return all(bool(np.isfinite(a).all()) for a in arrays)
