"""Where to look for a lost object, and which candidate of those crops to believe.

While an object is lost the tracker scores up to ``preset.redetect_crops`` crops for it each
frame: where it was last seen well, a promising candidate of the frame before, and a grid over the
frame visited nearest first, all at the target's last good scale so that the network sees the
object as it was trained to. The state machine (``siamtrack.lost``) confirms a find over frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from siamtrack.lost import Evidence, similarity
from siamtrack.state import ObjectState


def scan_centers(st: ObjectState, side: float, frame_wh: tuple[int, int], n: int) -> list[np.ndarray]:
    """Up to ``n`` crop centres of the frame grid for this frame, the next ones in turn each frame.

    The grid's cells are one scored area (3/4 of a crop's side) apart, ordered by distance from
    where the object was last seen well.
    """
    if n <= 0:
        return []
    w, h = frame_wh
    step = 0.75 * side
    nx, ny = max(1, math.ceil(w / step)), max(1, math.ceil(h / step))
    cells = [np.array([(cx + 0.5) * w / nx, (cy + 0.5) * h / ny]) for cy in range(ny) for cx in range(nx)]
    cells.sort(key=lambda c: float(np.hypot(*(c - st.good_center))))
    if len(cells) <= n:
        return cells
    first = st.scans * n
    return [cells[(first + j) % len(cells)] for j in range(n)]


def search_crops(st: ObjectState, side: float, frame_wh: tuple[int, int], crops: int, redetect: bool
                 ) -> list[np.ndarray]:
    """This frame's crop centres for lost object ``st`` (its last good place first); advances its scan."""
    mine = [st.good_center]
    if redetect:
        mine += [st.lead] if st.lead is not None else []
        mine += scan_centers(st, side, frame_wh, crops - len(mine))
    st.scans += 1
    return mine[:max(crops, 1)]


def best_candidates(owners: Sequence[int], picks: Sequence, usable: Sequence[bool],
                    states: Sequence[ObjectState]) -> dict[int, tuple[int, tuple]]:
    """Per object, its best-scoring usable crop ``(crop index, pick)``, skipping candidates within a
    target size of a place where a re-acquisition proved wrong (a distractor)."""
    best: dict[int, tuple[int, tuple]] = {}
    for c, i in enumerate(owners):
        st, pick = states[i], picks[c]
        near_reject = any(np.hypot(*(pick[3] - r)) <= max(st.good_size) for r in st.rejects)
        if usable[c] and not near_reject and (i not in best or pick[5] > best[i][1][5]):
            best[i] = (c, pick)
    return best


def judge(st: ObjectState, pick: tuple | None, look: np.ndarray | None, found_score: float) -> tuple[bool, float]:
    """Give this frame's best candidate (``None``: no usable one) to ``st``'s state machine: whether
    the object is found again, and the candidate's score. A confident candidate is kept as the lead
    that the next frame searches again; near a border the object left by, weaker evidence suffices."""
    ev = (Evidence(pick[5], (float(pick[3][0]), float(pick[3][1])), look=similarity(look, st.look))
          if pick is not None else Evidence(float("nan"), finite=False))
    size = float(max(st.good_size))
    at_exit = ev.center is not None and any(abs(ev.center[a] - v) <= size for a, v in st.exits)
    found = st.machine.search(ev, size, at_exit)
    st.lead = np.array(ev.center) if ev.center is not None and ev.score >= found_score else None
    return found, ev.score
