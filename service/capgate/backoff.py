"""Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff
And Jitter"): the wait before retry ``attempt + 1`` is uniform in
``[0, min(maximum, initial * 2**attempt))`` seconds. Used by the event exporters and
the bundle server poller."""

from __future__ import annotations

from collections.abc import Callable


def full_jitter(
    attempt: int, *, initial_seconds: float, max_seconds: float, random: Callable[[], float]
) -> float:
    """Seconds to wait after ``attempt`` (0-based) consecutive failures."""
    cap = min(max_seconds, initial_seconds * 2 ** min(attempt, 62))
    return random() * cap
