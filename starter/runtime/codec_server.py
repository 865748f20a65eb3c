"""The codec server: Temporal's remote codec protocol, so the Web UI shows decrypted payloads.

``POST …/encode`` and ``POST …/decode`` with ``{"payloads": [...]}``, over the standard library's HTTP
server, with CORS for the Web UI's origin (``enrollments codec-server``; docs/security.md). It decrypts what
it is sent, so it guards itself:

- **a token** (``ENROLLMENTS_CODEC_TOKEN``), when set, is required: as ``Authorization: Bearer <token>`` or
  as the first path segment (point the UI's codec endpoint at ``http://127.0.0.1:8888/<token>``: the UI
  appends ``/decode``). Compared in constant time;
- **Host and Origin**: only the hosts it serves (no DNS rebinding) and the configured UI origins;
- **bounded work**: bodies up to :data:`MAX_REQUEST_BYTES`, at most :data:`MAX_CONCURRENT_REQUESTS` at once
  (more get 503), a read timeout per connection; a negative or missing ``Content-Length`` is a 400/411;
- **no tracebacks**: malformed JSON, payloads and ciphertexts get a 400 with a one-line reason.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload, Payloads

from starter.connection.codec import CodecError, EncryptionCodec

MAX_REQUEST_BYTES = 16 * 1024 * 1024
"""The largest body accepted (the Web UI sends one history page at a time)."""
MAX_CONCURRENT_REQUESTS = 4
"""Requests decoded at once; memory stays below MAX_CONCURRENT_REQUESTS × MAX_REQUEST_BYTES (× a small factor)."""
READ_TIMEOUT_SECONDS = 30
DEFAULT_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")

logger = logging.getLogger(__name__)


class _Refused(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _CodecHandler(BaseHTTPRequestHandler):
    server: _CodecHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT_SECONDS
    _ALLOWED_HEADERS: ClassVar[str] = "Content-Type, X-Namespace, Authorization"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("codec server: " + format, *args)

    def _cors(self) -> None:
        origin = self.headers.get("Origin")
        if origin is not None and self.server.origin_allowed(origin):
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", self._ALLOWED_HEADERS)
            self.send_header("Vary", "Origin")

    def _reply(self, status: HTTPStatus, body: bytes) -> None:
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _check_host_and_origin(self) -> None:
        if not self.server.host_allowed(self.headers.get("Host", "")):
            raise _Refused(HTTPStatus.MISDIRECTED_REQUEST, "unknown Host")
        origin = self.headers.get("Origin")
        if origin is not None and not self.server.origin_allowed(origin):
            raise _Refused(HTTPStatus.FORBIDDEN, f"origin {origin!r} is not allowed")

    def do_OPTIONS(self) -> None:
        try:
            self._check_host_and_origin()
        except _Refused as refused:
            self._reply(refused.status, json.dumps({"error": refused.message}).encode())
            return
        self.send_response(HTTPStatus.NO_CONTENT)
        self._cors()
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        if not self.server.slots.acquire(blocking=False):
            self.close_connection = True
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, b'{"error": "busy: try again"}')
            return
        try:
            self._reply(HTTPStatus.OK, self._answer())
        except _Refused as refused:
            self.close_connection = True
            self._reply(refused.status, json.dumps({"error": refused.message}).encode())
        except Exception as error:  # never a traceback to the client or the log: a line says what went wrong
            logger.warning("codec server: %s: %s", type(error).__name__, error)
            self.close_connection = True
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, b'{"error": "internal error"}')
        finally:
            self.server.slots.release()

    def _answer(self) -> bytes:
        self._check_host_and_origin()
        segments = [segment for segment in self.path.split("?", 1)[0].split("/") if segment]
        operation = segments.pop() if segments else ""
        if not self.server.authorized(self.headers.get("Authorization"), segments):
            raise _Refused(HTTPStatus.UNAUTHORIZED, "a valid codec token is required")
        transform = self._transform(operation)
        body = self._body()
        try:
            request = json_format.Parse(body or b"{}", Payloads())
            return json_format.MessageToJson(Payloads(payloads=transform(request.payloads)), indent=None).encode()
        except (json_format.ParseError, UnicodeDecodeError) as error:
            raise _Refused(HTTPStatus.BAD_REQUEST, f'expected {{"payloads": [...]}}: {error}') from None
        except (CodecError, DecodeError, ValueError) as error:
            raise _Refused(HTTPStatus.BAD_REQUEST, f"a payload cannot be decoded: {error}") from None

    def _transform(self, operation: str) -> Callable[[Iterable[Payload]], list[Payload]]:
        if operation == "encode":
            return self.server.codec.encode_sync
        if operation == "decode":
            return self.server.codec.decode_sync
        raise _Refused(HTTPStatus.NOT_FOUND, "POST to …/encode or …/decode")

    def _body(self) -> bytes:
        declared = self.headers.get("Content-Length")
        if declared is None:
            raise _Refused(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
        try:
            length = int(declared)
        except ValueError:
            raise _Refused(HTTPStatus.BAD_REQUEST, "invalid Content-Length") from None
        if length < 0:
            raise _Refused(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
        if length > MAX_REQUEST_BYTES:
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body larger than {MAX_REQUEST_BYTES} bytes")
        body = self.rfile.read(length)
        if len(body) != length:
            raise _Refused(HTTPStatus.BAD_REQUEST, "the body is shorter than its Content-Length")
        return body


class _CodecHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        codec: EncryptionCodec,
        allowed_origins: Sequence[str],
        token: str | None,
        allowed_hosts: Sequence[str],
    ) -> None:
        super().__init__(address, _CodecHandler)
        self.codec = codec
        self.allowed_origins = frozenset(allowed_origins)
        self.token = token
        port = self.server_address[1]
        self.allowed_hosts = frozenset(
            host if ":" in host else f"{host}:{port}"
            for host in (*allowed_hosts, str(self.server_address[0]), "127.0.0.1", "localhost")
        )
        self.slots = threading.BoundedSemaphore(MAX_CONCURRENT_REQUESTS)

    def origin_allowed(self, origin: str) -> bool:
        return "*" in self.allowed_origins or origin in self.allowed_origins

    def host_allowed(self, host: str) -> bool:
        return host.strip().lower() in self.allowed_hosts

    def authorized(self, authorization: str | None, path_prefix: list[str]) -> bool:
        if self.token is None:
            return not path_prefix
        offered = path_prefix[0] if len(path_prefix) == 1 else None
        if authorization is not None and authorization.startswith("Bearer "):
            offered = authorization.removeprefix("Bearer ").strip()
        return offered is not None and hmac.compare_digest(offered.encode(), self.token.encode())


class CodecServer:
    """Temporal's remote codec endpoint on ``host:port`` (port 0: a free one), served by a thread.

    Bind it to loopback (the default): it decrypts whatever it is sent. ``token`` (optional) is required on
    every request; ``allowed_hosts`` adds names it may be reached by (e.g. behind a proxy). Use it as a
    context manager or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        codec: EncryptionCodec,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allowed_origins: Sequence[str] = DEFAULT_ORIGINS,
        token: str | None = None,
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        self._server = _CodecHTTPServer((host, port), codec, allowed_origins, token, allowed_hosts)
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
