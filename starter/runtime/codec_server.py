"""The codec server: Temporal's remote codec protocol, so the Web UI shows decrypted payloads.

``POST …/encode`` and ``POST …/decode`` with ``{"payloads": [...]}``, over the standard library's HTTP
server, with CORS for the Web UI's origin (``enrollments codec-server``; docs/security.md).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from starter.connection.codec import CodecError, EncryptionCodec

MAX_REQUEST_BYTES = 64 * 1024 * 1024
"""The codec server refuses bodies larger than this (the Web UI sends one history page at a time)."""

logger = logging.getLogger(__name__)


class _CodecHandler(BaseHTTPRequestHandler):
    server: _CodecHTTPServer
    protocol_version = "HTTP/1.1"
    _ALLOWED_HEADERS: ClassVar[str] = "Content-Type, X-Namespace, Authorization"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("codec server: " + format, *args)

    def _cors(self) -> None:
        origin = self.headers.get("Origin")
        allowed = self.server.allowed_origins
        if origin is not None and ("*" in allowed or origin in allowed):
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", self._ALLOWED_HEADERS)
            self.send_header("Vary", "Origin")

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._reply(status, json.dumps({"error": message}).encode())

    def do_OPTIONS(self) -> None:
        self.send_response(HTTPStatus.NO_CONTENT)
        self._cors()
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        operation = self.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        transform: Callable[[Iterable[Payload]], list[Payload]]
        if operation == "encode":
            transform = self.server.codec.encode_sync
        elif operation == "decode":
            transform = self.server.codec.decode_sync
        else:
            self._error(HTTPStatus.NOT_FOUND, "POST to …/encode or …/decode")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
            return
        if length > MAX_REQUEST_BYTES:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body larger than {MAX_REQUEST_BYTES} bytes")
            return
        try:
            request = json_format.Parse(self.rfile.read(length) or b"{}", Payloads())
        except json_format.ParseError as error:
            self._error(HTTPStatus.BAD_REQUEST, f'expected {{"payloads": [...]}}: {error}')
            return
        try:
            result = Payloads(payloads=transform(request.payloads))
        except CodecError as error:
            self._error(HTTPStatus.BAD_REQUEST, str(error))
            return
        self._reply(HTTPStatus.OK, json_format.MessageToJson(result, indent=None).encode())


class _CodecHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], codec: EncryptionCodec, allowed_origins: Sequence[str]) -> None:
        super().__init__(address, _CodecHandler)
        self.codec = codec
        self.allowed_origins = frozenset(allowed_origins)


class CodecServer:
    """Temporal's remote codec endpoint on ``host:port`` (port 0: a free one), served by a thread.

    Bind it to loopback (the default): it decrypts whatever it is sent. Use it as a context manager or call
    :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        codec: EncryptionCodec,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allowed_origins: Sequence[str] = ("http://localhost:8233", "http://127.0.0.1:8233"),
    ) -> None:
        self._server = _CodecHTTPServer((host, port), codec, allowed_origins)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> CodecServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="codec-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> CodecServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
