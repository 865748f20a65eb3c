"""Enrollments and orders named by id or by number: ``E-7KQ2M9XA`` and ``O-B0730H0Z`` work wherever an id does.

A reference that reads as a number of the right kind (any case, spaces and dashes inside ignored, I/L/O
typed for 1/0: :func:`activities.persistence.normalize_number`) is looked up in the database; when no
enrollment or order has that number, the reference is taken as an id. Anything else is an id as it is.
"""

from __future__ import annotations

from collections.abc import Callable

from activities.persistence import Store, normalize_number
from activities.persistence.numbers import ENROLLMENT_PREFIX, ORDER_PREFIX
from starter.client.errors import OrderNotFound


def as_number(reference: str, prefix: str) -> str | None:
    """``reference`` as a stored number with ``prefix`` (``E-`` or ``O-``), or None when it cannot be one."""
    try:
        number = normalize_number(reference)
    except ValueError:
        return None
    return number if number.startswith(prefix) else None


async def enrollment_id_of(store: Store, reference: str) -> str:
    """The id of the enrollment ``reference`` names: the enrollment with that number, else the id itself."""
    number = as_number(reference, ENROLLMENT_PREFIX)
    found = None if number is None else await store.enrollments.id_for_number(number)
    return found or reference


async def order_id_of(store: Store, reference: str) -> str:
    """The id of the order ``reference`` names: the order with that number, else the id itself."""
    number = as_number(reference, ORDER_PREFIX)
    found = None if number is None else await store.billing.order_id_for_number(number)
    return found or reference


async def order_and_enrollment(
    store_of: Callable[[], Store] | None, reference: str, enrollment_id: str | None, what: str
) -> tuple[str, str]:
    """The id of the order ``reference`` names and its enrollment's (``enrollment_id`` when given, else looked up).

    Without a store a number is taken as an id, and ``enrollment_id`` is required (``ValueError`` naming ``what``).
    """
    store = None if store_of is None else store_of()
    identifier = reference if store is None else await order_id_of(store, reference)
    if enrollment_id is not None:
        return identifier, enrollment_id
    if store is None:
        raise ValueError(f"{what} needs enrollment_id when the client has no database_url")
    order = await store.billing.get_order(identifier)
    if order is None or order.enrollment_id is None:
        raise OrderNotFound(reference)
    return identifier, order.enrollment_id
