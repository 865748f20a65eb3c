"""Security settings: TLS / mTLS / API key become the right ``Client.connect`` arguments; secrets never show."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig
from typer.testing import CliRunner

from starter.cli import app
from starter.connection.codec import EncryptionCodec, generate_key
from starter.connection.security import connect_options, tls_config
from starter.connection.settings import Settings

API_KEY = "tmprl-api-key-9f8e7d6c5b4a"
DB_PASSWORD = "db-pass-5f4e3d"
SECURITY_VARIABLES = (
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_CA_CERT",
    "TEMPORAL_TLS_CLIENT_CERT",
    "TEMPORAL_TLS_CLIENT_KEY",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_API_KEY",
    "ENROLLMENTS_CODEC_KEY",
    "DATABASE_URL",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in SECURITY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for name in ("ca", "cert", "key"):
        path = tmp_path / f"{name}.pem"
        path.write_bytes(f"-----BEGIN {name.upper()}-----\n{name}\n-----END {name.upper()}-----\n".encode())
        files[name] = path
    return files


def test_defaults_are_plaintext_without_key_or_codec() -> None:
    options = connect_options(Settings())
    assert options == {"data_converter": pydantic_data_converter, "tls": False, "api_key": None}


def test_tls_flag_and_api_key_turn_tls_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_TLS", "true")
    assert tls_config(Settings()) is True
    monkeypatch.setenv("TEMPORAL_TLS", "false")
    monkeypatch.setenv("TEMPORAL_API_KEY", API_KEY)
    options = connect_options(Settings())
    assert options["api_key"] == API_KEY
    assert options["tls"] is True, "an API key never travels in plaintext"


def test_custom_ca_and_mtls_files_are_read(monkeypatch: pytest.MonkeyPatch, pem_files: dict[str, Path]) -> None:
    monkeypatch.setenv("TEMPORAL_TLS_CA_CERT", str(pem_files["ca"]))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT", str(pem_files["cert"]))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY", str(pem_files["key"]))
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_NAME", "temporal.internal.example")
    config = tls_config(Settings())
    assert isinstance(config, TLSConfig)
    assert config.server_root_ca_cert == pem_files["ca"].read_bytes()
    assert config.client_cert == pem_files["cert"].read_bytes()
    assert config.client_private_key == pem_files["key"].read_bytes()
    assert config.domain == "temporal.internal.example"


def test_half_an_mtls_pair_or_a_missing_file_is_an_error(
    monkeypatch: pytest.MonkeyPatch, pem_files: dict[str, Path], tmp_path: Path
) -> None:
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT", str(pem_files["cert"]))
    with pytest.raises(ValueError, match="TEMPORAL_TLS_CLIENT_KEY is not set"):
        tls_config(Settings())
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY", str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match=r"TEMPORAL_TLS_CLIENT_KEY: cannot read .*missing\.pem"):
        tls_config(Settings())


def test_codec_key_puts_the_codec_on_the_data_converter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENROLLMENTS_CODEC_KEY", generate_key())
    converter = connect_options(Settings())["data_converter"]
    assert isinstance(converter.payload_codec, EncryptionCodec)
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class
    monkeypatch.setenv("ENROLLMENTS_CODEC_KEY", "  ")
    assert connect_options(Settings())["data_converter"] is pydantic_data_converter, "blank means off"


def test_secrets_never_appear_in_repr_str_dumps_or_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    codec_key = generate_key()
    monkeypatch.setenv("TEMPORAL_API_KEY", API_KEY)
    monkeypatch.setenv("ENROLLMENTS_CODEC_KEY", codec_key)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://enrollments:{DB_PASSWORD}@db.internal/enrollments")
    settings = Settings()
    caplog.set_level(logging.DEBUG)
    logging.getLogger("test").info("settings: %s %r", settings, settings)
    for text in (repr(settings), str(settings), caplog.text):
        assert API_KEY not in text and codec_key not in text and DB_PASSWORD not in text
    dumped = settings.model_dump_json()  # an explicit dump keeps the URL (it is configuration) but masks secrets
    assert API_KEY not in dumped and codec_key not in dumped
    assert settings.temporal_api_key is not None and settings.temporal_api_key.get_secret_value() == API_KEY
    assert repr(connect_options(settings)["data_converter"].payload_codec).count(codec_key) == 0


def test_worker_banner_redacts_the_database_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker prints its settings before connecting; connecting to a closed port then fails."""
    monkeypatch.setenv("TEMPORAL_API_KEY", API_KEY)
    monkeypatch.setenv("ENROLLMENTS_LOG_FORMAT", "text")
    env = {"DATABASE_URL": f"postgresql://u:{DB_PASSWORD}@127.0.0.1:1/x", "TEMPORAL_ADDRESS": "127.0.0.1:1"}
    result = CliRunner().invoke(app, ["worker"], env=env)
    assert result.exit_code != 0
    assert "***" in result.output
    assert DB_PASSWORD not in result.output and API_KEY not in result.output
