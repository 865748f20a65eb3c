"""A webhook receiver on loopback for development, tests and benchmarks: records every POST, answers as told.

It is a real HTTP/1.1 server (standard library, keep-alive, a thread per connection) that can be stopped and
started again on the same port, answer with an error status or a redirect, or answer late (past a timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    """One POST as it arrived (path, headers with lower-case names, raw body, ``time.time()``) and the status
    it was answered with."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b"ok"
    delay_seconds: float = 0.0
    location: str | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a connection dropped by :meth:`WebhookReceiver.stop` or by a client that gave up is expected."""


class WebhookReceiver:
    """Records POSTs on ``http://127.0.0.1:<port>/``; ``answer`` says how to respond (default 200)."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.answer = Answer()
        self._next: list[Answer] = []
        self._received: list[Received] = []
        self._acknowledged: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/hooks"

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def acknowledged(self, path: str) -> int:
        """How many POSTs to ``path`` were answered 2xx (counted as they arrive: cheap to poll)."""
        with self._lock:
            return self._acknowledged.get(path, 0)

    def answer_next(self, *answers: Answer) -> None:
        """Answer the next requests so, one each, before falling back to :attr:`answer`."""
        with self._lock:
            self._next.extend(answers)

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, each answer waits for a delayed ACK.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with receiver._lock:
                    receiver._connections.add(self.connection)

            def finish(self) -> None:
                with receiver._lock:
                    receiver._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender went away mid-request (killed): nothing arrived
                    self.close_connection = True
                    return
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver._lock:
                    answer = receiver._next.pop(0) if receiver._next else receiver.answer
                    received = Received(self.path, headers, body, time.time(), answer.status)
                    receiver._received.append(received)
                    if 200 <= answer.status < 300:
                        receiver._acknowledged[self.path] = receiver._acknowledged.get(self.path, 0) + 1
                if answer.delay_seconds:
                    time.sleep(answer.delay_seconds)
                try:
                    self.send_response(answer.status)
                    if answer.location is not None:
                        self.send_header("Location", answer.location)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:  # the client gave up waiting
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = _Server((LOOPBACK, self.port), Handler)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name=f"webhook-receiver-{self.port}", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open connections: the receiver is down until :meth:`start`."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):  # closed already
                connection.shutdown(socket.SHUT_RDWR)

    async def wait_for(self, predicate: Callable[[list[Received]], bool], seconds: float = 30.0) -> list[Received]:
        """The received requests once ``predicate(received)`` holds; ``TimeoutError`` after ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            received = self.received
            if predicate(received):
                return received
            if time.monotonic() > deadline:
                raise TimeoutError(f"the receiver got {len(received)} requests; still waiting after {seconds} s")
            await asyncio.sleep(0.02)
