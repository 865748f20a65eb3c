"""Fault injection for tests: crash an activity right after its commit, before Temporal hears of it.

Off unless a test arms it; arming counts down, so ``arm(AFTER_COMMIT, times=1)`` fails exactly one
activity attempt, which Temporal then retries (the retry must find its rows and duplicate nothing).
"""

from __future__ import annotations

from enum import StrEnum


class FaultPoint(StrEnum):
    AFTER_COMMIT = "after_commit"


class InjectedFault(RuntimeError):
    """The crash an armed fault point raises (retryable, like a lost worker)."""


class FaultInjector:
    def __init__(self) -> None:
        self._remaining: dict[FaultPoint, int] = {}
        self._spacing: dict[FaultPoint, int] = {}
        self._skip: dict[FaultPoint, int] = {}
        self.fired: dict[FaultPoint, int] = {}

    def arm(self, point: FaultPoint, times: int = 1, *, spacing: int = 0) -> None:
        """Fail the next ``times`` hits of ``point``, letting ``spacing`` hits pass after each failure
        (so a retry succeeds instead of backing off again)."""
        self._remaining[point] = times
        self._spacing[point] = spacing
        self._skip[point] = 0

    def disarm(self) -> None:
        self._remaining.clear()
        self._spacing.clear()
        self._skip.clear()
        self.fired.clear()

    def hit(self, point: FaultPoint) -> None:
        if self._remaining.get(point, 0) <= 0:
            return
        if self._skip.get(point, 0) > 0:
            self._skip[point] -= 1
            return
        self._remaining[point] -= 1
        self._skip[point] = self._spacing.get(point, 0)
        self.fired[point] = self.fired.get(point, 0) + 1
        raise InjectedFault(f"injected fault at {point}")


fault_injector = FaultInjector()
