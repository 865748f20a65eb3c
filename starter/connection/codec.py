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

The Web UI decodes through the codec server (:mod:`starter.runtime.codec_server`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Iterable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCRYPTED_ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12
ASSOCIATED_DATA = b"durable-enrollments/payload/v1"


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
