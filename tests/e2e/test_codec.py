"""The payload codec: AES-GCM round trip, key rotation, no plaintext PII in histories, the codec server."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from adapters.domain import BillingInterval, ProductPlan
from adapters.lifecycle import workflow_id_for
from starter.connection.codec import CodecError, EncryptionCodec, generate_key, key_id, parse_keys
from starter.devtools import binaries as temporal_binaries
from starter.devtools.binaries import register_search_attributes
from starter.runtime.codec_server import CodecServer
from tests.support.paths import REPO_ROOT
from tests.support.temporal_env import add_product, running_worker

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
PII: dict[str, Any] = {
    "billing_address": {"first_name": "Zelda", "last_name": "Quixotic-Vandermeer", "city": "Llanfairpwllgwyngyll"},
    "contact": {"email_address": "zelda.quixotic@example.test", "telephone": "+41 79 555 01 23"},
}
PII_STRINGS = [b"Quixotic-Vandermeer", b"Llanfairpwllgwyngyll", b"zelda.quixotic@example.test", b"+41 79 555 01 23"]


def _payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"secret": text}).encode())


def _codec() -> EncryptionCodec:
    return EncryptionCodec.from_setting(generate_key())


async def test_round_trip_hides_the_data_and_restores_it_exactly() -> None:
    codec = _codec()
    payloads = [_payload("Quixotic-Vandermeer"), Payload(metadata={"encoding": b"binary/null"})]
    encoded = await codec.encode(payloads)
    assert all(payload.metadata["encoding"] == b"binary/encrypted" for payload in encoded)
    assert b"Quixotic" not in b"".join(payload.SerializeToString() for payload in encoded)
    assert encoded[0].data != (await codec.encode(payloads[:1]))[0].data, "a fresh nonce per payload"
    assert await codec.decode(encoded) == payloads


async def test_rotation_tamper_and_unknown_keys() -> None:
    old, new = generate_key(), generate_key()
    written = await EncryptionCodec.from_setting(old).encode([_payload("x")])
    rotated = EncryptionCodec.from_setting(f"{new},{old}")
    assert await rotated.decode(written) == [_payload("x")]
    assert (await rotated.encode([_payload("x")]))[0].metadata != written[0].metadata, "the first key encrypts"
    with pytest.raises(CodecError, match="which ENROLLMENTS_CODEC_KEY lacks"):
        await EncryptionCodec.from_setting(new).decode(written)
    tampered = Payload()
    tampered.CopyFrom(written[0])
    tampered.data = tampered.data[:-1] + bytes([tampered.data[-1] ^ 1])
    with pytest.raises(CodecError, match="corrupt or was tampered with"):
        await rotated.decode([tampered])
    plain = _payload("recorded before the codec")
    assert await rotated.decode([plain]) == [plain]
    assert len(parse_keys(f" {new} , {old} ")) == 2
    assert new not in repr(rotated) and old not in repr(rotated)


@SQLITE_ONLY
@pytest.mark.parametrize("encrypted", [True, False], ids=["codec-on", "codec-off"])
async def test_pii_is_not_in_the_history_when_the_codec_is_on(database_url: str, encrypted: bool) -> None:
    converter = (
        dataclasses.replace(pydantic_data_converter, payload_codec=_codec()) if encrypted else pydantic_data_converter
    )
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_binaries.test_server_path(), data_converter=converter
    )
    try:
        await register_search_attributes(env.client, "default")
        await add_product(database_url, "monthly", ProductPlan(billing_interval=BillingInterval.MONTHS))
        async with running_worker(env, database_url) as (client, _):
            enrollment_id = await client.create_enrollment(product_id="monthly", user_id="u-pii", **PII)
            view = await client.get_enrollment(enrollment_id)
            assert view.contact is not None and view.contact.email_address == "zelda.quixotic@example.test"
            await client.pause(enrollment_id, reason="holiday")
            history = await env.client.get_workflow_handle(workflow_id_for(enrollment_id)).fetch_history()
    finally:
        await env.shutdown()
    raw = b"".join(event.SerializeToString() for event in history.events)
    found = [pii for pii in PII_STRINGS if pii in raw]
    if encrypted:
        assert found == []
        assert b"binary/encrypted" in raw
        assert b"u-pii" in raw, "search attributes and summaries stay readable (ids only)"
    else:
        assert found == PII_STRINGS


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _payloads_json(*payloads: Payload) -> bytes:
    return json_format.MessageToJson(Payloads(payloads=payloads)).encode()


def test_codec_server_encodes_and_decodes_over_http_with_cors() -> None:
    origin = "http://localhost:8233"
    with CodecServer(_codec(), port=0, allowed_origins=[origin]) as server:
        headers = {"Content-Type": "application/json", "X-Namespace": "default", "Origin": origin}
        status, response_headers, body = _post(f"{server.url}/encode", _payloads_json(_payload("Zelda")), headers)
        assert status == 200 and response_headers["Access-Control-Allow-Origin"] == origin
        encoded = json_format.Parse(body, Payloads())
        assert encoded.payloads[0].metadata["encoding"] == b"binary/encrypted"
        assert b"Zelda" not in encoded.payloads[0].SerializeToString()
        status, _, body = _post(f"{server.url}/decode", body, headers)
        assert status == 200 and json_format.Parse(body, Payloads()).payloads[0] == _payload("Zelda")

        preflight = urllib.request.Request(f"{server.url}/decode", method="OPTIONS", headers={"Origin": origin})
        with urllib.request.urlopen(preflight, timeout=10) as response:
            assert response.status == 204
            assert "X-Namespace" in response.headers["Access-Control-Allow-Headers"]
        _, foreign, _ = _post(f"{server.url}/decode", body, {"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in foreign
        assert _post(f"{server.url}/decode", b"{not json", headers)[0] == 400
        assert _post(f"{server.url}/export", b"{}", headers)[0] == 404
        foreign_key_payload = json_format.MessageToJson(Payloads(payloads=encoded.payloads)).encode()
    with CodecServer(_codec(), port=0) as other:
        status, _, body = _post(f"{other.url}/decode", foreign_key_payload)
        assert status == 400 and b"ENROLLMENTS_CODEC_KEY lacks" in body


def test_codec_server_command_serves_until_terminated(tmp_path: Path) -> None:
    key = generate_key()
    env = {**os.environ, "ENROLLMENTS_CODEC_KEY": key}
    process = subprocess.Popen(
        [sys.executable, "-m", "starter", "codec-server", "--port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert key not in line
        url = line.split("codec server on ", 1)[1].split(" ", 1)[0]
        encoded = EncryptionCodec.from_setting(key).encode_sync([_payload("via the CLI")])
        status, _, body = _post(f"{url}/decode", _payloads_json(*encoded))
        assert status == 200 and json_format.Parse(body, Payloads()).payloads[0] == _payload("via the CLI")
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0


def test_codec_server_command_needs_a_key() -> None:
    env = {key: value for key, value in os.environ.items() if key != "ENROLLMENTS_CODEC_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "starter", "codec-server"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "ENROLLMENTS_CODEC_KEY is not set" in done.stderr


def _raw_request(url: str, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` as it is on a socket (headers the HTTP libraries would not send); status and body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_codec_server_guards_itself() -> None:
    token = "s3cret-token-for-the-ui"
    key = generate_key()
    payloads = _payloads_json(_payload("Zelda"))
    with CodecServer(EncryptionCodec.from_setting(key), port=0, token=token) as server:
        assert _post(f"{server.url}/encode", payloads)[0] == 401, "no token"
        assert _post(f"{server.url}/wrong-token/encode", payloads)[0] == 401
        assert _post(f"{server.url}/{token}/encode", payloads)[0] == 200, "the token as the endpoint's path"
        assert _post(f"{server.url}/encode", payloads, {"Authorization": f"Bearer {token}"})[0] == 200
        _, port = server.url.removeprefix("http://").split(":")
        auth = f"Authorization: Bearer {token}\r\n".encode()
        probes = [
            (b"Host: attacker.example\r\nContent-Length: 2\r\n\r\n{}", 421),  # DNS rebinding
            (b"Host: 127.0.0.1:" + port.encode() + b"\r\nContent-Length: -5\r\n\r\n", 400),
            (b"Host: 127.0.0.1:" + port.encode() + b"\r\n\r\n", 411),
            (b"Host: 127.0.0.1:" + port.encode() + b"\r\nContent-Length: 999999999999\r\n\r\n", 413),
        ]
        for headers, expected in probes:
            status, body = _raw_request(server.url, b"POST /decode HTTP/1.1\r\n" + auth + headers)
            assert status == expected, (headers, status, body)
        fingerprint = key_id(parse_keys(key)[0]).encode()
        ours = Payload(metadata={"encoding": b"binary/encrypted", "encryption-key-id": fingerprint}, data=b"")
        status, _, body = _post(f"{server.url}/decode", _payloads_json(ours), {"Authorization": f"Bearer {token}"})
        assert status == 400 and b"cannot be decoded" in body, body
        status, _, _ = _post(
            f"{server.url}/decode", payloads, {"Authorization": f"Bearer {token}", "Origin": "https://evil.example"}
        )
        assert status == 403
