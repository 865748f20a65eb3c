"""Payload encryption for Temporal histories (AES-256-GCM) and the codec server the Web UI decodes with.

:class:`EncryptionCodec` encrypts **every** payload the client and worker send to Temporal — workflow and
activity inputs and results, signals, updates, queries, continue-as-new state — not only the fields that
hold PII. An enrollment's billing address and contact travel inside the enrollment snapshot, which is
part of almost every message, so encrypting whole payloads is the only way no copy is missed (it is also
Temporal's standard approach). Search attributes, summaries and failure messages are not payloads and stay
readable: they carry ids, statuses and dates, never addresses or contacts.

Keys come from ``ENROLLMENTS_CODEC_KEY``: one or more base64-encoded 32-byte keys separated by commas.
The first key encrypts; every key decrypts (rotation: put the new key first and keep the old ones until
no open history needs them). Each encrypted payload names its key by a short fingerprint. Payloads that
are not encrypted (recorded before the codec was turned on) decode unchanged.

:class:`CodecServer` implements Temporal's remote codec protocol (``POST …/encode`` and ``POST …/decode``
with ``{"payloads": [...]}``) over the standard library's HTTP server, with CORS for the Web UI's origin.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

ENCRYPTED_ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12
ASSOCIATED_DATA = b"durable-enrollments/payload/v1"
MAX_REQUEST_BYTES = 64 * 1024 * 1024
"""The codec server refuses bodies larger than this (the Web UI sends one history page at a time)."""

logger = logging.getLogger(__name__)


class CodecKeyError(ValueError):
    """``ENROLLMENTS_CODEC_KEY`` is malformed; the message says how (never what the key is)."""


class CodecError(ValueError):
    """A payload cannot be decrypted: unknown key, or tampered or truncated data."""


def generate_key() -> str:
    """A new random key, base64-encoded, suitable for ``ENROLLMENTS_CODEC_KEY``."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def key_id(key: bytes) -> str:
    """The fingerprint that names ``key`` in encrypted payloads (not secret: a hash prefix)."""
    return hashlib.sha256(key).hexdigest()[:16]


def parse_keys(text: str) -> list[bytes]:
    """Comma-separated base64 keys (standard or URL-safe alphabet), each exactly 32 bytes, first = current."""
    keys: list[bytes] = []
    for position, part in enumerate(part.strip() for part in text.split(",")):
        if not part:
            continue
        padded = part + "=" * (-len(part) % 4)
        try:
            decoded = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise CodecKeyError(f"ENROLLMENTS_CODEC_KEY: key {position + 1} is not valid base64") from None
        if len(decoded) != KEY_BYTES:
            raise CodecKeyError(
                f"ENROLLMENTS_CODEC_KEY: key {position + 1} is {len(decoded)} bytes; AES-256 needs {KEY_BYTES} "
                "(generate one with `enrollments codec-key`)"
            )
        keys.append(decoded)
    if not keys:
        raise CodecKeyError("ENROLLMENTS_CODEC_KEY: no key given")
    return keys


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole payloads; the first key encrypts, all keys decrypt."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise CodecKeyError("an encryption codec needs at least one key")
        self._ciphers = {key_id(key): AESGCM(key) for key in keys}
        self._current = key_id(keys[0])

    @classmethod
    def from_setting(cls, text: str) -> EncryptionCodec:
        return cls(parse_keys(text))

    def __repr__(self) -> str:
        return f"EncryptionCodec(current key {self._current}, {len(self._ciphers)} key(s))"

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._current].encrypt(nonce, payload.SerializeToString(), ASSOCIATED_DATA)
        return Payload(
            metadata={"encoding": ENCRYPTED_ENCODING, KEY_ID_METADATA: self._current.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCRYPTED_ENCODING:
            return payload  # written before the codec was on
        identifier = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        cipher = self._ciphers.get(identifier)
        if cipher is None:
            raise CodecError(f"payload was encrypted with key {identifier!r}, which ENROLLMENTS_CODEC_KEY lacks")
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], ASSOCIATED_DATA)
        except InvalidTag:
            raise CodecError(f"payload encrypted with key {identifier!r} is corrupt or was tampered with") from None
        decoded = Payload()
        decoded.ParseFromString(plain)
        return decoded

    def encode_sync(self, payloads: Iterable[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    def decode_sync(self, payloads: Iterable[Payload]) -> list[Payload]:
        return [self.decrypt(payload) for payload in payloads]

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.encode_sync(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.decode_sync(payloads)


# --- the codec server --------------------------------------------------------------------------------


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
