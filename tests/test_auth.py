"""console/auth.py: the login throttle (the rest is exercised through the pages and API)."""

from __future__ import annotations

from console.auth import LoginThrottle


def test_throttle_blocks_after_too_many_failures_and_forgives_success() -> None:
    throttle = LoginThrottle(max_failures=3, window_seconds=60)
    for _ in range(3):
        assert not throttle.blocked("user:ann")
        throttle.failed("user:ann", "ip:1")
    assert throttle.blocked("user:ann") and throttle.blocked("ip:1")
    assert not throttle.blocked("user:bob")
    throttle.succeeded("user:ann")
    assert not throttle.blocked("user:ann")


def test_failures_expire_with_the_window() -> None:
    throttle = LoginThrottle(max_failures=1, window_seconds=0.0)
    throttle.failed("user:ann")
    assert not throttle.blocked("user:ann")


def test_memory_stays_bounded_under_a_flood_of_usernames() -> None:
    throttle = LoginThrottle(max_failures=5, window_seconds=900)
    throttle.max_keys = 100
    for n in range(1000):
        throttle.failed(f"user:{n}")
    assert len(throttle._failures) <= 100
    throttle.failed("user:ann")
    assert "user:ann" in throttle._failures
