"""Lost-target handling: the state machine, the tracker's lost step, records, drawing, eval and the CLI."""

from __future__ import annotations

import pytest

from siamtrack.lost import LOST, TRACKED, UNCERTAIN, Evidence, StateMachine


def machine(**kw) -> StateMachine:
    args = {"lost_score": 0.3, "uncertain_score": 0.6, "lost_after": 2, "found_score": 0.9, "found_after": 2}
    return StateMachine(**{**args, **kw})


def test_misses_in_a_row_make_an_object_lost_and_one_good_frame_resets_the_count():
    m = machine()
    assert [m.observe(Evidence(s)) for s in (0.99, 0.2, 0.8, 0.2)] == [TRACKED, UNCERTAIN, UNCERTAIN, UNCERTAIN]
    assert m.observe(Evidence(0.1)) == LOST


def test_uncertain_has_hysteresis_two_good_frames_to_return():
    m = machine()
    states = [m.observe(Evidence(s)) for s in (0.5, 0.7, 0.5, 0.7, 0.7, 0.7)]
    assert states == [UNCERTAIN, UNCERTAIN, UNCERTAIN, UNCERTAIN, TRACKED, TRACKED]


@pytest.mark.parametrize("ev", [Evidence(float("nan")), Evidence(0.99, finite=False), Evidence(float("inf"))])
def test_non_finite_evidence_is_lost_at_once(ev):
    assert machine().observe(ev) == LOST


def test_search_confirms_only_consistent_strong_candidates():
    m = machine(found_after=3)
    m.observe(Evidence(float("nan")))
    size = 50.0
    assert not m.search(Evidence(0.95, (100, 100)), size)
    assert not m.search(Evidence(0.95, (300, 100)), size)  # jumped: the streak starts again
    assert not m.search(Evidence(0.95, (310, 100)), size)
    assert not m.search(Evidence(0.85, (312, 100)), size)  # too weak: starts again
    assert not m.search(Evidence(0.95, (315, 100)), size)
    assert not m.search(Evidence(0.95, (320, 104)), size)
    assert m.state == LOST
    assert m.search(Evidence(0.96, (330, 110)), size)
    assert m.state == TRACKED


def test_thresholds_are_checked():
    with pytest.raises(ValueError):
        machine(lost_score=0.7)
    with pytest.raises(ValueError):
        machine(found_after=0)
