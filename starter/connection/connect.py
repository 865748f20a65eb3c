"""The one way every process (client library, worker, CLI) opens its Temporal client."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.runtime import Runtime

from starter.connection.security import connect_options
from starter.connection.settings import Settings


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A Temporal client from settings: pydantic data converter, TLS, API key, codec (``runtime``: e.g. metrics)."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        runtime=runtime,
        **connect_options(settings),  # TLS / mTLS, API key, payload codec (starter/connection/security.py)
    )
