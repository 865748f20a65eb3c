"""One embedded dev stack (``starter.devtools.stack.DevStack``) per test session, for the CLI, Web UI and metrics tests.

The stack runs in a thread of its own with its own event loop, so synchronous tests (the CLI through
``CliRunner``, Playwright's sync API) can use it while its worker keeps working. It binds free loopback
ports and keeps its state and SQLite database in a temporary directory. Registered as a pytest plugin by
``tests/conftest.py``; it starts only when a test asks for ``dev_stack``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest

from starter.devtools.stack import DevConfig, DevStack, free_port

T = TypeVar("T")

START_TIMEOUT = 90.0
CALL_TIMEOUT = 60.0


class ThreadedDevStack:
    """A :class:`DevStack` served by a background thread; :meth:`run` executes coroutines on its loop."""

    def __init__(self, config: DevConfig) -> None:
        self.config = config
        self._ready: Future[DevStack] = Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="dev-stack", daemon=True)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with DevStack(self.config) as stack:
                self._ready.set_result(stack)
                await self._stop.wait()
        except BaseException as error:
            if not self._ready.done():
                self._ready.set_exception(error)
            raise

    def start(self) -> DevStack:
        self._thread.start()
        return self._ready.result(timeout=START_TIMEOUT)

    @property
    def stack(self) -> DevStack:
        return self._ready.result(timeout=0)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=timeout)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)


@pytest.fixture(scope="session")
def dev_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedDevStack]:
    state_dir: Path = tmp_path_factory.mktemp("dev-stack")
    config = DevConfig(
        state_dir=state_dir,
        temporal_port=free_port(),
        ui_port=free_port(),
        database_url=f"sqlite+aiosqlite:///{state_dir / 'enrollments.db'}",
        next_period_attribute=True,  # the opt-in EnrollmentNextPeriodAt column, filtered in the Web UI test
    )
    served = ThreadedDevStack(config)
    try:
        served.start()
        yield served
    finally:
        served.stop()
