"""Fault injection for tests: crash an activity right after its commit, before Temporal hears of it.

Off unless armed. ``arm(AFTER_COMMIT, times=1)`` counts down, so it fails exactly one activity attempt,
which Temporal then retries (the retry must find its rows and duplicate nothing).
``arm_probability(AFTER_COMMIT, 0.05)`` fails each hit with that probability, for chaos runs.

A worker process is armed from the environment: ``ENROLLMENTS_FAULTS=after_commit:0.05`` (a probability
per hit; comma-separate several points), read once at worker start (:func:`parse_fault_spec`,
:meth:`FaultInjector.configure`). Unset or empty means off — never set it in production.
"""

from __future__ import annotations

import random
from enum import StrEnum

FAULTS_ENV = "ENROLLMENTS_FAULTS"


class FaultPoint(StrEnum):
    AFTER_COMMIT = "after_commit"


class InjectedFault(RuntimeError):
    """The crash an armed fault point raises (retryable, like a lost worker)."""


def parse_fault_spec(spec: str | None) -> dict[FaultPoint, float]:
    """``"after_commit:0.05"`` as ``{AFTER_COMMIT: 0.05}``; None or blank is ``{}`` (off).

    Raises ``ValueError`` naming the part that is not ``<point>:<probability in [0, 1]>``.
    """
    probabilities: dict[FaultPoint, float] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        name, separator, value = part.strip().partition(":")
        known = ", ".join(point.value for point in FaultPoint)
        if not separator:
            raise ValueError(f"{FAULTS_ENV}: {part.strip()!r} is not <point>:<probability> (points: {known})")
        try:
            point = FaultPoint(name.strip())
        except ValueError:
            raise ValueError(f"{FAULTS_ENV}: unknown fault point {name.strip()!r} (points: {known})") from None
        try:
            probability = float(value)
        except ValueError:
            raise ValueError(f"{FAULTS_ENV}: probability {value.strip()!r} of {point} is not a number") from None
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"{FAULTS_ENV}: probability of {point} must be between 0 and 1, got {probability}")
        probabilities[point] = probability
    return probabilities


class FaultInjector:
    def __init__(self) -> None:
        self._remaining: dict[FaultPoint, int] = {}
        self._spacing: dict[FaultPoint, int] = {}
        self._skip: dict[FaultPoint, int] = {}
        self._probability: dict[FaultPoint, float] = {}
        self._random = random.Random()
        self.fired: dict[FaultPoint, int] = {}

    def arm(self, point: FaultPoint, times: int = 1, *, spacing: int = 0) -> None:
        """Fail the next ``times`` hits of ``point``, letting ``spacing`` hits pass after each failure
        (so a retry succeeds instead of backing off again)."""
        self._remaining[point] = times
        self._spacing[point] = spacing
        self._skip[point] = 0

    def arm_probability(self, point: FaultPoint, probability: float, *, seed: int | None = None) -> None:
        """Fail each hit of ``point`` with ``probability`` (until disarmed)."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be between 0 and 1, got {probability}")
        self._probability[point] = probability
        if seed is not None:
            self._random.seed(seed)

    def configure(self, spec: str | None) -> dict[FaultPoint, float]:
        """Arm from an ``ENROLLMENTS_FAULTS`` value (see :func:`parse_fault_spec`); returns what was armed."""
        probabilities = parse_fault_spec(spec)
        for point, probability in probabilities.items():
            self.arm_probability(point, probability)
        return probabilities

    def disarm(self) -> None:
        self._remaining.clear()
        self._spacing.clear()
        self._skip.clear()
        self._probability.clear()
        self.fired.clear()

    def hit(self, point: FaultPoint) -> None:
        probability = self._probability.get(point, 0.0)
        if probability > 0.0 and self._random.random() < probability:
            self._fire(point)
        if self._remaining.get(point, 0) <= 0:
            return
        if self._skip.get(point, 0) > 0:
            self._skip[point] -= 1
            return
        self._remaining[point] -= 1
        self._skip[point] = self._spacing.get(point, 0)
        self._fire(point)

    def _fire(self, point: FaultPoint) -> None:
        self.fired[point] = self.fired.get(point, 0) + 1
        raise InjectedFault(f"injected fault at {point}")


fault_injector = FaultInjector()
