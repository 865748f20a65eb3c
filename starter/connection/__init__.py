"""How every process reaches Temporal: settings from the environment, TLS / API key, payload codec, connect()."""

from starter.connection.codec import CodecError, CodecKeyError, EncryptionCodec, generate_key, key_id, parse_keys
from starter.connection.connect import connect
from starter.connection.security import connect_options, data_converter, tls_config
from starter.connection.settings import DEFAULT_DATABASE_URL, Settings

__all__ = [
    "DEFAULT_DATABASE_URL",
    "CodecError",
    "CodecKeyError",
    "EncryptionCodec",
    "Settings",
    "connect",
    "connect_options",
    "data_converter",
    "generate_key",
    "key_id",
    "parse_keys",
    "tls_config",
]
