"""The [events] and [snapshot] config tables: defaults, one-line errors, the labels tracked."""

from __future__ import annotations

import pytest

from app.config import EventsConfig, validate_config
from app.errors import ConfigError
from app.events.recorder import presence_rules, tracked_labels


def test_defaults_suppress_single_frame_flicker() -> None:
    cfg = validate_config({})
    assert (cfg.events.start_frames, cfg.events.window_frames, cfg.events.end_after_s) == (3, 5, 2.0)
    assert cfg.events.labels is None and cfg.snapshot.max_kb == 100 and cfg.snapshot.save is False


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"events": {"start_frames": 6}}, "start_frames (6) must not exceed window_frames (5)"),
        ({"events": {"end_after_s": -1}}, "events.end_after_s"),
        ({"events": {"labels": "face"}}, "events.labels"),
        ({"snapshot": {"max_kb": 1}}, "snapshot.max_kb"),
        ({"snapshot": {"quality": 5}}, "unknown key 'snapshot.quality'"),
    ],
)
def test_bad_values_are_one_line_errors(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(data, "c.toml")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_labels_default_to_the_models() -> None:
    assert tracked_labels(EventsConfig(), ["person", "car", "person", ""]) == ["person", "car"]
    assert tracked_labels(EventsConfig(labels=["car"]), ["person", "car"]) == ["car"]
    rules = presence_rules(EventsConfig(labels=["car"], min_score=0.6, start_frames=2, window_frames=4))
    assert (rules.labels, rules.min_score, rules.start_frames, rules.window_frames) == (
        frozenset({"car"}), 0.6, 2, 4,
    )  # fmt: skip
    assert presence_rules(EventsConfig()).labels is None
