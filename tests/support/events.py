"""Reading the event outbox in tests: wait until the events of finished writes are readable.

On PostgreSQL an event becomes readable once every write transaction older than its own has ended, in any
database of the server (see activities/persistence/events.py); on a server other test suites share, that can
take a moment after the write returned.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from activities.persistence import Store
from adapters.events import Event

SETTLE_SECONDS = 15.0


async def settled_events(store: Store, expected: int, **filters: Any) -> list[Event]:
    """The first 1,000 events matching ``filters`` once at least ``expected`` are readable (or the wait ran out)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        events = (await store.events.page(limit=1_000, **filters)).events
        if len(events) >= expected or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.02)
