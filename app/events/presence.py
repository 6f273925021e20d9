"""Presence per label, debounced: pure logic, no clock, no threads, no I/O.

A label's presence starts when it has been seen in at least K of the last N frames and ends when it
has not been *confirmed* (K of N) for T seconds, so neither a one-frame false positive nor a one-frame
miss flips it. The count is smoothed the same way: the largest c such that at least K of the last N
frames had c or more detections of the label. While present, a change of that count is an `update`
(it can drop to 0 during the T-second hold; `end` follows unless the label comes back).

Time is whatever the caller passes (the frame's capture time, or now for `expire`), in seconds.
Between frames, `expire` ends a presence only when frames have stopped (none for STALL_S, or T if
longer): a slow pipeline's next frame may still confirm it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from app.detection import Detection

ChangeType = Literal["start", "update", "end"]
STALL_S = 5.0


@dataclass(frozen=True)
class PresenceRules:
    """K of N frames to start (and to count), T seconds unconfirmed to end, which detections count."""

    start_frames: int = 3  # K
    window_frames: int = 5  # N
    end_after_s: float = 2.0  # T
    min_score: float = 0.0  # detections below this score are not counted
    labels: frozenset[str] | None = None  # None: every label the model reports

    def __post_init__(self) -> None:
        if not 1 <= self.start_frames <= self.window_frames:
            raise ValueError(
                f"presence: start_frames ({self.start_frames}) must be between 1 and window_frames "
                f"({self.window_frames})"
            )
        if self.end_after_s < 0:
            raise ValueError(f"presence: end_after_s must be >= 0 (got {self.end_after_s})")

    def counts(self, d: Detection) -> bool:
        """Whether a detection counts toward its label's presence."""
        return d.score >= self.min_score and (self.labels is None or d.label in self.labels)


@dataclass(frozen=True)
class PresenceChange:
    """One event: a label's presence started, its smoothed count changed, or it ended."""

    type: ChangeType
    label: str
    count: int
    max_score: float
    started_at: float
    ts: float


@dataclass
class LabelState:
    """One label's window of recent frames and, while present, its presence."""

    window: deque[tuple[float, int, float]]  # (ts, count, max score) per frame, newest last
    present: bool = False
    count: int = 0
    max_score: float = 0.0
    started_at: float = 0.0
    last_confirmed: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {"count": self.count, "max_score": round(self.max_score, 4), "started_at": self.started_at}


def smoothed_count(counts: Iterable[int], k: int) -> int:
    """The largest c such that at least k of `counts` are >= c (0 when fewer than k counts)."""
    ranked = sorted(counts, reverse=True)
    return ranked[k - 1] if len(ranked) >= k else 0


@dataclass
class PresenceTracker:
    """Feed it every processed frame (`observe`) and the time now and then (`expire`)."""

    rules: PresenceRules = field(default_factory=PresenceRules)
    states: dict[str, LabelState] = field(default_factory=dict)
    last_frame: float | None = None

    def observe(self, ts: float, detections: Iterable[Detection]) -> list[PresenceChange]:
        """One frame's detections at capture time `ts`: the changes it causes, in label order."""
        r = self.rules
        self.last_frame = ts
        seen: dict[str, tuple[int, float]] = {}
        for d in detections:
            if not r.counts(d):
                continue
            n, top = seen.get(d.label, (0, 0.0))
            seen[d.label] = (n + 1, max(top, float(d.score)))
        for label in seen.keys() - self.states.keys():
            self.states[label] = LabelState(deque(maxlen=r.window_frames))
        changes: list[PresenceChange] = []
        for label in sorted(self.states):
            st = self.states[label]
            n, top = seen.get(label, (0, 0.0))
            st.window.append((ts, n, top))
            change = self._step(label, st, ts)
            if change is not None:
                changes.append(change)
        return changes

    def expire(self, now: float) -> list[PresenceChange]:
        """When frames have stopped coming: end the presences unconfirmed for T seconds at `now`."""
        t = self.rules.end_after_s
        if self.last_frame is not None and now - self.last_frame < max(t, STALL_S):
            return []
        return [
            self._end(label, st, now)
            for label, st in sorted(self.states.items())
            if st.present and now - st.last_confirmed >= t
        ]

    def finish(self, now: float) -> list[PresenceChange]:
        """End every presence (the service is stopping)."""
        return [self._end(label, st, now) for label, st in sorted(self.states.items()) if st.present]

    def present(self) -> dict[str, dict[str, float | int]]:
        """The labels present now: {label: {count, max_score, started_at}}."""
        return {label: st.as_dict() for label, st in sorted(self.states.items()) if st.present}

    # --- internals -------------------------------------------------------------------------------
    def _step(self, label: str, st: LabelState, ts: float) -> PresenceChange | None:
        k = self.rules.start_frames
        count = smoothed_count((n for _, n, _ in st.window), k)
        hits = [(t, top) for t, n, top in st.window if n > 0]
        if count > 0:
            st.last_confirmed = ts
        if not st.present:
            if count == 0:
                if not hits:
                    del self.states[label]  # nothing left in the window: forget the label
                return None
            st.present, st.count = True, count
            st.started_at = min(t for t, _ in hits)  # the first sighting of those that confirmed it
            st.max_score = max(top for _, top in hits)
            return PresenceChange("start", label, count, st.max_score, st.started_at, ts)
        if count > 0:
            st.max_score = max(st.max_score, st.window[-1][2])
        elif ts - st.last_confirmed >= self.rules.end_after_s:
            return self._end(label, st, ts)
        if count != st.count:
            st.count = count
            return PresenceChange("update", label, count, st.max_score, st.started_at, ts)
        return None

    def _end(self, label: str, st: LabelState, ts: float) -> PresenceChange:
        change = PresenceChange("end", label, 0, st.max_score, st.started_at, ts)
        st.present, st.count = False, 0
        st.window.clear()
        return change
