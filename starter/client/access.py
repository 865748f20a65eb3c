"""Access at a moment older than what an enrollment's workflow carries, answered from the database.

A workflow carries its recent periods only (older ones stay in the database, ``history_trimmed``), so its
``is_valid_for_activation`` query cannot see a period it no longer carries. For such a moment the client
runs the same pure rule, the adapter's ``is_valid_for_activation``, on the stored snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from activities.persistence import Store
from adapters.builtin import BUILTIN_ADAPTERS, director_from_names
from adapters.director import AdapterClass, UnknownAdapterError, adapter_for_key
from adapters.lifecycle import EnrollmentView


def needs_stored_periods(view: EnrollmentView, at: datetime) -> bool:
    """Whether the workflow's answer for ``at`` may miss a period it no longer carries."""
    return view.history_trimmed and view.period_at(at) is None


def _adapter(key: str, adapter_names: Iterable[str]) -> AdapterClass | None:
    """The adapter registered under ``key``: this process's adapters, the built-in ones and the configured ones."""
    try:
        return adapter_for_key(key)
    except UnknownAdapterError:
        director_from_names([*BUILTIN_ADAPTERS, *adapter_names])  # registers their keys
    try:
        return adapter_for_key(key)
    except UnknownAdapterError:
        return None


async def stored_access(store: Store, enrollment_id: str, at: datetime, adapter_names: Iterable[str]) -> bool | None:
    """The adapter's ``is_valid_for_activation`` on the stored snapshot; None when the enrollment or its adapter
    is unknown here."""
    stored = await store.enrollments.get(enrollment_id, with_log=False)
    if stored is None or stored.adapter_key is None:
        return None
    adapter = _adapter(stored.adapter_key, adapter_names)
    return None if adapter is None else adapter.is_valid_for_activation(stored, at)
