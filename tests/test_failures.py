"""A streak of failures: growing pauses and a log that stays short."""

from __future__ import annotations

import logging

import pytest

from bot.failures import MAX_PAUSE_SECONDS, FailureStreak


def _fail(streak: FailureStreak, first_pause: float) -> float:
    try:
        raise ConnectionResetError("[Errno 104] Connection reset by peer")
    except ConnectionResetError:
        return streak.failed(first_pause)


def test_pauses_double_up_to_the_cap_and_reset_after_a_success() -> None:
    streak = FailureStreak(logging.getLogger("test.streak"), "outbox pass")
    pauses = [_fail(streak, 0.5) for _ in range(7)]
    assert pauses == [0.5, 1.0, 2.0, 4.0, 8.0, MAX_PAUSE_SECONDS, MAX_PAUSE_SECONDS]
    streak.succeeded()
    assert _fail(streak, 0.5) == 0.5


def test_only_the_first_failure_carries_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    streak = FailureStreak(logging.getLogger("test.streak"), "outbox pass")
    with caplog.at_level(logging.WARNING, logger="test.streak"):
        for _ in range(3):
            _fail(streak, 1.0)
        streak.succeeded()
        streak.succeeded()  # nothing was failing: nothing to say
    records = caplog.records
    assert [r.levelno for r in records] == [logging.ERROR] + [logging.WARNING] * 3
    assert records[0].exc_info is not None
    assert all(r.exc_info is None for r in records[1:])
    assert "still failing (2 tries" in records[1].getMessage()
    assert "ConnectionResetError: [Errno 104]" in records[1].getMessage()
    assert "works again after 3 failed tries" in records[3].getMessage()
