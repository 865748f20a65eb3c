"""Domain errors of the persistence layer; each message names the id or key it is about.

Activities map them to non-retryable Temporal failures by class name: retrying cannot fix any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any


class PersistenceError(Exception):
    """Base of the repository's domain errors."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild from the constructor arguments, not from the formatted message, when pickled.
        return (type(self), self._init_args)

    _init_args: tuple[Any, ...] = ()


class NotFoundError(PersistenceError, LookupError):
    """Something the operation needs does not exist."""


class EnrollmentNotFound(NotFoundError):
    def __init__(self, enrollment_id: str) -> None:
        super().__init__(f"enrollment {enrollment_id!r} not found")
        self.enrollment_id = enrollment_id
        self._init_args = (enrollment_id,)


class ProductNotFound(NotFoundError):
    def __init__(self, product_id: str) -> None:
        super().__init__(f"product {product_id!r} not found")
        self.product_id = product_id
        self._init_args = (product_id,)


class OrderNotFound(NotFoundError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id!r} not found")
        self.order_id = order_id
        self._init_args = (order_id,)


class DatabaseNotFound(NotFoundError):
    """A SQLite database file that does not exist, opened by something that must not create it."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no database at {path}")
        self.path = path
        self._init_args = (path,)


class WebhookNotFound(NotFoundError):
    def __init__(self, endpoint_id: str) -> None:
        super().__init__(f"webhook endpoint {endpoint_id!r} not found")
        self.endpoint_id = endpoint_id
        self._init_args = (endpoint_id,)


class ConflictError(PersistenceError, ValueError):
    """A retry-safe operation was called again with different data under the same key."""


class EnrollmentConflict(ConflictError):
    def __init__(self, enrollment_id: str, fields: Sequence[str]) -> None:
        super().__init__(
            f"enrollment {enrollment_id!r} already exists with different terms ({', '.join(fields)} differ)"
        )
        self.enrollment_id = enrollment_id
        self.fields = tuple(fields)
        self._init_args = (enrollment_id, self.fields)


class UsageConflict(ConflictError):
    def __init__(self, enrollment_id: str, idempotency_key: str, recorded_units: int, units: int) -> None:
        super().__init__(
            f"usage {idempotency_key!r} of enrollment {enrollment_id!r} was recorded with {recorded_units} units, "
            f"not {units}"
        )
        self.enrollment_id = enrollment_id
        self.idempotency_key = idempotency_key
        self.recorded_units = recorded_units
        self.units = units
        self._init_args = (enrollment_id, idempotency_key, recorded_units, units)


class UsageRefused(PersistenceError, ValueError):
    """Usage that cannot be billed: the enrollment is not metered, or ``at`` lies where no open period is.

    ``reason`` says which (e.g. the period containing ``at`` was already billed: late usage is refused).
    """

    def __init__(self, enrollment_id: str, idempotency_key: str, reason: str) -> None:
        super().__init__(f"usage {idempotency_key!r} of enrollment {enrollment_id!r} is refused: {reason}")
        self.enrollment_id = enrollment_id
        self.idempotency_key = idempotency_key
        self.reason = reason
        self._init_args = (enrollment_id, idempotency_key, reason)


class EnrollmentTerminated(PersistenceError, ValueError):
    """A change to an enrollment that is TERMINATED, which is final; ``expires`` is when its access ended."""

    def __init__(self, message: str, enrollment_id: str, expires: datetime | None) -> None:
        super().__init__(message)
        self.enrollment_id = enrollment_id
        self.expires = expires
        self._init_args = (message, enrollment_id, expires)
