"""How processes connect to Temporal securely: TLS / mTLS, API key and the payload codec, from settings.

:func:`connect_options` turns :class:`~starter.connection.settings.Settings` into the keyword arguments of
``temporalio.client.Client.connect``; :func:`starter.connection.connect` uses it for every client and worker.
Secrets (API key, codec key) stay :class:`pydantic.SecretStr` until this point and are never logged.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TypedDict

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.service import TLSConfig

from starter.connection.codec import EncryptionCodec
from starter.connection.settings import Settings


class ConnectOptions(TypedDict):
    """The security-related keyword arguments of ``Client.connect``."""

    data_converter: DataConverter
    tls: bool | TLSConfig
    api_key: str | None


def _read(variable: str, path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.expanduser().read_bytes()
    except OSError as error:
        raise ValueError(f"{variable}: cannot read {path}: {error.strerror or error}") from None


def tls_config(settings: Settings) -> bool | TLSConfig:
    """``False`` (plaintext), ``True`` (TLS with the system's CAs) or a :class:`TLSConfig` (custom CA, mTLS).

    Any TLS setting turns TLS on, and so does an API key (it must not travel in plaintext). A client
    certificate needs its key and the key its certificate; unreadable files are errors naming the variable.
    """
    ca = _read("TEMPORAL_TLS_CA_CERT", settings.temporal_tls_ca_cert)
    cert = _read("TEMPORAL_TLS_CLIENT_CERT", settings.temporal_tls_client_cert)
    key = _read("TEMPORAL_TLS_CLIENT_KEY", settings.temporal_tls_client_key)
    if (cert is None) != (key is None):
        missing = "TEMPORAL_TLS_CLIENT_KEY" if key is None else "TEMPORAL_TLS_CLIENT_CERT"
        raise ValueError(f"mTLS needs both a client certificate and its key: {missing} is not set")
    server_name = settings.temporal_tls_server_name
    if ca is not None or cert is not None or server_name is not None:
        return TLSConfig(server_root_ca_cert=ca, client_cert=cert, client_private_key=key, domain=server_name)
    return settings.temporal_tls or settings.temporal_api_key is not None


def data_converter(settings: Settings) -> DataConverter:
    """The pydantic data converter, with the encryption codec when ``ENROLLMENTS_CODEC_KEY`` is set."""
    if settings.codec_key is None:
        return pydantic_data_converter
    codec = EncryptionCodec.from_setting(settings.codec_key.get_secret_value())
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec)


def connect_options(settings: Settings) -> ConnectOptions:
    """``data_converter``, ``tls`` and ``api_key`` for ``Client.connect`` from ``settings``."""
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key is not None else None
    return ConnectOptions(data_converter=data_converter(settings), tls=tls_config(settings), api_key=api_key)
