"""Security commands of ``enrollments``: the codec server for the Web UI and a codec key generator."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from starter.cli.app import state
from starter.cli.errors import CliError
from starter.connection.codec import EncryptionCodec, generate_key, key_id, parse_keys
from starter.runtime.codec_server import DEFAULT_ORIGINS, CodecServer


def register(app: typer.Typer) -> None:
    app.command("codec-server")(codec_server)
    app.command("codec-key")(codec_key)


def codec_server(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", min=0, max=65_535, help="Port to listen on (0: a free one).")] = 8888,
    host: Annotated[str, typer.Option("--host", help="Address to bind; keep it on loopback.")] = "127.0.0.1",
    origin: Annotated[
        list[str] | None,
        typer.Option("--origin", help="Web UI origin allowed by CORS (repeatable; default: the dev server's UI)."),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option("--allowed-host", help="Another Host name it is reached by, e.g. behind a proxy (repeatable)."),
    ] = None,
) -> None:
    """Serve Temporal's codec protocol (POST /encode, /decode) so the Web UI shows decrypted payloads.

    The keys come from ENROLLMENTS_CODEC_KEY; ENROLLMENTS_CODEC_TOKEN, when set, is required on every request.
    Point the UI's codec endpoint at the printed URL.
    """
    settings = state(ctx).settings
    if settings.codec_key is None:
        raise CliError("ENROLLMENTS_CODEC_KEY is not set: the codec server needs the key the workers encrypt with")
    codec = EncryptionCodec.from_setting(settings.codec_key.get_secret_value())
    origins = origin or list(DEFAULT_ORIGINS)
    token = None if settings.codec_token is None else settings.codec_token.get_secret_value()
    try:
        server = CodecServer(
            codec, host=host, port=port, allowed_origins=origins, token=token, allowed_hosts=allowed_host or ()
        )
    except OSError as error:
        raise CliError(f"cannot listen on {host}:{port}: {error.strerror or error}", exit_code=1) from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    endpoint = "codec endpoint: the URL + '/<ENROLLMENTS_CODEC_TOKEN>'" if token else "no token (loopback only)"
    typer.echo(f"codec server on {server.url} (CORS: {', '.join(origins)}; {endpoint}); Ctrl-C stops it", err=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()


def codec_key(
    ctx: typer.Context,
    check: Annotated[bool, typer.Option("--check", help="Validate ENROLLMENTS_CODEC_KEY instead.")] = False,
) -> None:
    """Print a new random key for ENROLLMENTS_CODEC_KEY, or with --check the fingerprints of the set keys."""
    if not check:
        typer.echo(generate_key())
        return
    secret = state(ctx).settings.codec_key
    if secret is None:
        raise CliError("ENROLLMENTS_CODEC_KEY is not set")
    for position, key in enumerate(parse_keys(secret.get_secret_value())):
        role = "encrypts and decrypts" if position == 0 else "decrypts"
        typer.echo(f"key {position + 1}: fingerprint {key_id(key)} ({role})")
