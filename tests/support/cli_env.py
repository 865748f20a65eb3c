"""The ``enrollments`` CLI in tests: a ``cli`` fixture that runs commands against the session's dev stack, a
``product`` on it, and checks for the one-line outcomes. Registered as a pytest plugin by ``tests/conftest.py``.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from starter.cli import app
from tests.support.dev_stack_env import ThreadedDevStack

ENV_VARS = ("DATABASE_URL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE")
MINUTE_PLAN = '{"billing_interval": "MINUTES", "billing_interval_count": 30}'


@pytest.fixture
def cli(dev_stack: ThreadedDevStack, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    config = dev_stack.config
    global_options = ["--address", config.address, "--database-url", config.effective_database_url]

    def invoke(*args: str, options: list[str] | None = None) -> Result:
        return runner.invoke(app, [*(global_options if options is None else options), *args])

    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def fails(result: Result, exit_code: int, message: str) -> None:
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "Traceback" not in result.stderr and "Value error" not in result.stderr


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def product(cli: Any) -> str:
    product_id = unique("cli-product")
    ok(cli("product", "create", "--id", product_id, "--plan", MINUTE_PLAN, "--title", "CLI test"))
    return product_id
