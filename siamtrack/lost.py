"""Whether a tracked object is still in view: a small, pure state machine with hysteresis.

SiamMask always answers with a box and a mask, even when its object is hidden. The machine
reads the evidence the network already gives for one object in one frame and says
``tracked``, ``uncertain`` or ``lost``:

* a normal step's score below ``lost_score``, or an appearance below ``lost_look`` with a
  score below ``found_score``, is a miss (appearance: the cosine between the correlation
  vector at the chosen cell, which the network computes anyway for the mask, and a running
  mean of it over ``tracked`` frames; a board sliding over the object keeps scores of 0.7-0.9
  with the compact model, but its appearance drops from ~0.98 to ~0.6-0.75); ``lost_after`` misses in a row (or a
  non-finite network output, at once) make the object ``lost``; a score below
  ``uncertain_score`` makes it ``uncertain`` (mask and box still given, flagged), and it
  returns to ``tracked`` after two frames in a row at or above ``uncertain_score``;
* while ``lost``, the tracker searches wider (see ``Tracker``) and hands the machine its best
  candidate: only a candidate scoring at least ``found_score`` (and ``found_look``) on ``found_after``
  frames in a row, each within one target size of the previous one, brings the object back. A distractor
  that peaks once, or candidates that jump around the frame, do not. Where the object left the frame
  (a candidate at that border), the appearance needs only ``lost_look``.

No I/O, no network: evidence in, state out, so every transition is unit-testable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["LOST", "STATES", "TRACKED", "UNCERTAIN", "Evidence", "StateMachine", "finite", "similarity",
           "updated_reference"]

TRACKED, UNCERTAIN, LOST = "tracked", "uncertain", "lost"
STATES = (TRACKED, UNCERTAIN, LOST)
RECOVER_AFTER = 2  # frames in a row at or above uncertain_score to leave "uncertain"


@dataclass(frozen=True)
class Evidence:
    """What one frame says about one object.

    ``score``: the chosen candidate's classification score (a normal step's pick, or while
    lost the best re-detection candidate); ``center``: where that candidate is (frame pixels);
    ``finite``: whether the network's outputs for this object were all finite; ``look``: the
    appearance similarity to the object as tracked so far (1: the same).
    """

    score: float
    center: tuple[float, float] | None = None
    finite: bool = True
    look: float = 1.0


class StateMachine:
    """Per-object state from per-frame evidence; see the module docstring for the rules."""

    def __init__(self, lost_score: float, uncertain_score: float, lost_after: int, found_score: float,
                 found_after: int, lost_look: float = 0.0, found_look: float = 0.0) -> None:
        if not 0 <= lost_score <= uncertain_score <= 1:
            raise ValueError(f"need 0 <= lost_score ({lost_score}) <= uncertain_score ({uncertain_score}) <= 1")
        if lost_after < 1 or found_after < 1:
            raise ValueError("lost_after and found_after are at least 1")
        self.lost_score = lost_score
        self.uncertain_score = uncertain_score
        self.lost_after = lost_after
        self.found_score = found_score
        self.found_after = found_after
        self.lost_look = lost_look
        self.found_look = found_look
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
        if not ev.finite or not math.isfinite(ev.score) or not math.isfinite(ev.look):
            return self.lose()
        # appearance alone is no miss when the score is as high as a confirmed re-detection's:
        # fast-changing objects (a rolling ball, a dancer) look different but score ~1
        if ev.score < self.lost_score or (ev.look < self.lost_look and ev.score < self.found_score):
            self._misses += 1
            self._good = 0
            if self._misses >= self.lost_after:
                return self.lose()
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

    def search(self, ev: Evidence, target_size: float, at_exit: bool = False) -> bool:
        """While lost: the best re-detection candidate of this frame; True when it is confirmed.

        Confirmation needs ``found_after`` candidates in a row at or above ``found_score`` and
        ``found_look``, each within ``target_size`` pixels of the one before; the state is then ``tracked``.
        ``at_exit``: the candidate is where the object left the frame, which is itself evidence; its
        appearance then needs only ``lost_look`` (what keeps a tracked object), since an object coming
        back is partly cut off by the border and seen against other background.
        """
        look_needed = min(self.lost_look, self.found_look) if at_exit else self.found_look
        ok = (ev.finite and math.isfinite(ev.score) and ev.score >= self.found_score and ev.look >= look_needed
              and ev.center is not None)
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

    def lose(self) -> str:
        """Lost now, whatever the evidence (a non-finite output, or the caller says so)."""
        self.state = LOST
        self._misses = self._good = self._streak = 0
        self._last = None
        return self.state


def finite(*arrays: np.ndarray) -> bool:
    """Whether every value of every array is finite (a NaN/inf network output makes an object lost)."""
    return all(bool(np.isfinite(a).all()) for a in arrays)


def similarity(vector: np.ndarray, reference: np.ndarray | None) -> float:
    """Cosine between an appearance vector and the unit-length reference (1.0 with no reference yet)."""
    if reference is None:
        return 1.0
    norm = float(np.linalg.norm(vector))
    return float(vector @ reference) / norm if norm > 0 and math.isfinite(norm) else float("nan")


def updated_reference(reference: np.ndarray | None, vector: np.ndarray, rate: float = 0.1) -> np.ndarray:
    """The running appearance of a tracked object: unit vector, moved ``rate`` towards this frame's."""
    v = vector / max(float(np.linalg.norm(vector)), 1e-12)
    if reference is None:
        return v
    out = (1 - rate) * reference + rate * v
    return out / max(float(np.linalg.norm(out)), 1e-12)
