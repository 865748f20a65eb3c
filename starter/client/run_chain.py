"""Updates that follow an enrollment's workflow across continue-as-new: the run that answers is the latest."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio.service import RPCError, RPCStatusCode

T = TypeVar("T")

RUN_CHAIN_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
"""Waits before an update is sent again to a workflow that was closing its run (continue-as-new)."""


class RunEnded(Exception):
    """The update reached a run that had just ended by continuing as new; its successor answers it."""


async def following_runs(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, made again when the workflow's run was closing (it continues as new): the next run answers."""
    for delay in RUN_CHAIN_RETRY_DELAYS:
        try:
            return await call()
        except RunEnded:
            pass
        except RPCError as error:
            if "closing" not in error.message.lower():
                raise
        await asyncio.sleep(delay)
    try:
        return await call()
    except RunEnded:
        raise RPCError("the enrollment's workflow kept ending its runs", RPCStatusCode.UNAVAILABLE, b"") from None
