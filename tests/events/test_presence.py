"""Presence per label: K of N to start and to count, T seconds unconfirmed to end (pure logic)."""

from __future__ import annotations

import pytest

from app.detection import Detection
from app.events.presence import STALL_S, PresenceRules, PresenceTracker, smoothed_count

BOX = (10.0, 10.0, 50.0, 50.0)


def dets(*items: tuple[str, float]) -> list[Detection]:
    return [Detection(label, score, BOX) for label, score in items]


def run(tracker: PresenceTracker, frames: list[list[Detection]], fps: float = 10.0, t0: float = 100.0):
    """Feed frames at `fps`; return [(frame index, change)]."""
    out = []
    for i, frame in enumerate(frames):
        out += [(i, c) for c in tracker.observe(t0 + i / fps, frame)]
    return out


FACE = dets(("face", 0.9))
NONE: list[Detection] = []


def test_smoothed_count_is_the_kth_largest() -> None:
    assert smoothed_count([0, 2, 1, 2, 0], 3) == 1
    assert smoothed_count([2, 2, 2, 1, 0], 3) == 2
    assert smoothed_count([3, 0, 0, 0, 0], 3) == 0
    assert smoothed_count([1, 1], 3) == 0  # fewer frames than K


def test_single_frame_flicker_starts_nothing() -> None:
    t = PresenceTracker(PresenceRules(start_frames=3, window_frames=5))
    frames = [FACE, NONE, NONE, FACE, NONE, NONE, NONE, FACE, NONE, NONE] * 3
    assert run(t, frames) == []
    assert t.present() == {}


def test_start_at_k_of_n_with_first_sighting_as_started_at() -> None:
    t = PresenceTracker(PresenceRules(start_frames=3, window_frames=5))
    changes = run(t, [NONE, FACE, NONE, FACE, FACE, FACE], fps=10.0, t0=100.0)
    assert len(changes) == 1
    i, c = changes[0]
    assert (i, c.type, c.label, c.count) == (4, "start", "face", 1)
    assert c.started_at == pytest.approx(100.1)  # frame 1: the first of the sightings that confirmed it
    assert c.ts == pytest.approx(100.4)
    assert c.max_score == pytest.approx(0.9)


def test_end_after_t_seconds_unconfirmed_and_one_miss_does_not_end() -> None:
    t = PresenceTracker(PresenceRules(start_frames=2, window_frames=3, end_after_s=1.0))
    frames = [FACE] * 5 + [NONE] + [FACE] * 5 + [NONE] * 30
    changes = run(t, frames, fps=10.0)
    kinds = [(i, c.type, c.count) for i, c in changes]
    # the smoothed count drops to 0 two frames after the last sighting (K=2 of N=3), then T=1 s later: end
    assert kinds == [(1, "start", 1), (12, "update", 0), (21, "end", 0)]
    assert changes[-1][1].started_at == pytest.approx(100.0)


def test_count_is_smoothed_like_presence() -> None:
    two = dets(("face", 0.8), ("face", 0.7))
    t = PresenceTracker(PresenceRules(start_frames=3, window_frames=5, end_after_s=5.0))
    frames = [FACE] * 5 + [two, FACE, two, two, two, two] + [FACE] * 5
    changes = [(i, c.type, c.count) for i, c in run(t, frames)]
    # one frame with two faces (frame 5) changes nothing; three of the last five do (frame 8)
    assert changes == [(2, "start", 1), (8, "update", 2), (13, "update", 1)]


def test_labels_are_independent_and_filtered() -> None:
    rules = PresenceRules(start_frames=1, window_frames=1, end_after_s=0.0, labels=frozenset({"face"}))
    t = PresenceTracker(rules)
    changes = run(t, [dets(("face", 0.9), ("cat", 0.9)), dets(("cat", 0.9)), NONE])
    assert [(i, c.type, c.label) for i, c in changes] == [(0, "start", "face"), (1, "end", "face")]
    assert "cat" not in t.states


def test_min_score() -> None:
    t = PresenceTracker(PresenceRules(start_frames=2, window_frames=2, min_score=0.8))
    assert run(t, [dets(("face", 0.7))] * 5) == []
    assert [c.type for _, c in run(t, [dets(("face", 0.85))] * 2, t0=200.0)] == ["start"]


def test_max_score_grows_while_present() -> None:
    t = PresenceTracker(PresenceRules(start_frames=1, window_frames=1, end_after_s=0.0))
    frames = [dets(("face", 0.6)), dets(("face", 0.95)), dets(("face", 0.7)), NONE]
    changes = [c for _, c in run(t, frames)]
    assert [(c.type, c.max_score) for c in changes] == [("start", 0.6), ("end", 0.95)]


def test_expire_ends_presence_when_frames_stop() -> None:
    t = PresenceTracker(PresenceRules(start_frames=1, window_frames=2, end_after_s=2.0))
    run(t, [FACE, FACE], fps=10.0, t0=100.0)  # last frame, confirmed, at 100.1
    assert t.expire(102.2) == []  # T has passed but a slow pipeline's next frame may still confirm it
    (end,) = t.expire(100.1 + STALL_S)
    assert (end.type, end.label, end.ts) == ("end", "face", 100.1 + STALL_S)
    assert t.present() == {}
    assert t.expire(200.0) == []


def test_expire_leaves_a_long_hold_running() -> None:
    t = PresenceTracker(PresenceRules(start_frames=1, window_frames=1, end_after_s=30.0))
    run(t, [FACE], t0=100.0)
    assert t.expire(100.0 + STALL_S + 1) == []
    assert [c.type for c in t.expire(130.0)] == ["end"]


def test_finish_ends_everything() -> None:
    t = PresenceTracker(PresenceRules(start_frames=1, window_frames=1))
    run(t, [dets(("face", 0.9), ("person", 0.8))])
    assert sorted(c.label for c in t.finish(500.0)) == ["face", "person"]
    assert t.present() == {}


def test_present_state_and_restart_needs_k_fresh_frames() -> None:
    t = PresenceTracker(PresenceRules(start_frames=2, window_frames=3, end_after_s=0.0))
    run(t, [FACE, FACE])
    assert t.present() == {"face": {"count": 1, "max_score": 0.9, "started_at": 100.0}}
    changes = run(t, [NONE, NONE, FACE, NONE, FACE, FACE], t0=200.0)
    assert [(i, c.type) for i, c in changes] == [(1, "end"), (4, "start")]


@pytest.mark.parametrize("k,n", [(0, 3), (4, 3)])
def test_rules_refuse_k_outside_1_to_n(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="start_frames"):
        PresenceRules(start_frames=k, window_frames=n)
