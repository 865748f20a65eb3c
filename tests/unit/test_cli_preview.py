"""The ``enrollments`` CLI: ``preview`` output and errors, the shared error path, ``db upgrade`` wiring."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from starter.cli import app
from starter.cli.app import state
from starter.devtools.state import STATE_FILE, Announcement

ENV_VARS = ("DATABASE_URL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE")
TRIAL_PLAN = '{"billing_interval": "MONTHS", "trial_interval": "DAYS", "trial_interval_count": 14}'
ZURICH_ARGS = ["preview", "--plan", TRIAL_PLAN, "--start", "2031-01-31T00:00:00Z", "--timezone", "Europe/Zurich"]

# Monthly from 01:00 Zurich time (00:00Z) after a 14-day trial; Zurich moves to summer time on 2031-03-30.
ZURICH_EXPECTED = [
    {"start": "2031-01-31T00:00:00Z", "end": "2031-02-14T00:00:00Z", "is_trial": True},
    {"start": "2031-02-14T00:00:00Z", "end": "2031-03-14T00:00:00Z", "is_trial": False},
    {"start": "2031-03-14T00:00:00Z", "end": "2031-04-13T23:00:00Z", "is_trial": False},
    {"start": "2031-04-13T23:00:00Z", "end": "2031-05-13T23:00:00Z", "is_trial": False},
    {"start": "2031-05-13T23:00:00Z", "end": "2031-06-13T23:00:00Z", "is_trial": False},
]

INVALID_PLANS = [
    ("{}", "plan.billing_interval: is required"),
    ('{"billing_interval": "FORTNIGHTS"}', "plan.billing_interval: must be one of 'MINUTES', 'HOURS'"),
    ('{"billing_interval": "MONTHS", "billing_interval_count": 0}', "plan.billing_interval_count: must be at least 1"),
    ('{"billing_interval": "MONTHS", "billing_interval_count": -3}', "plan.billing_interval_count: must be at least 1"),
    ('{"billing_interval": "MONTHS", "trial_interval_count": 3}', "plan.trial_interval: is required when"),
    (
        '{"billing_interval": "MONTHS", "trial_interval": "DAYS", "trial_interval_count": -1}',
        "plan.trial_interval_count: must be at least 0",
    ),
    ('{"billing_interval": "MONTHS", "colour": "blue"}', "plan.colour: is not a known field"),
    ("not json", "plan: is not valid JSON"),
    ('["MONTHS"]', "plan: must be a JSON object"),
]


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def run(runner: CliRunner, *args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, list(args), env=env)


def assert_usage_error(result: Result, message: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "Traceback" not in result.stderr


# --- preview -------------------------------------------------------------------------------------------


def test_preview_prints_the_schedule_as_json(runner: CliRunner) -> None:
    result = run(runner, *ZURICH_ARGS, "--periods", "5")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout) == ZURICH_EXPECTED
    assert result.stdout == json.dumps(ZURICH_EXPECTED, indent=2) + "\n"


def test_preview_defaults_to_utc_and_twelve_periods(runner: CliRunner) -> None:
    result = run(runner, "preview", "--plan", '{"billing_interval": "MONTHS"}', "--start", "2024-01-31T09:00:00+01:00")
    assert result.exit_code == 0, result.stderr
    periods = json.loads(result.stdout)
    assert len(periods) == 12
    assert [period["start"] for period in periods[:4]] == [
        "2024-01-31T08:00:00Z",
        "2024-02-29T08:00:00Z",
        "2024-03-31T08:00:00Z",
        "2024-04-30T08:00:00Z",
    ]
    assert all(period["is_trial"] is False for period in periods)
    assert periods[-1]["end"] == "2025-01-31T08:00:00Z"


def test_preview_accepts_up_to_1000_periods(runner: CliRunner) -> None:
    result = run(runner, "preview", "--plan", '{"billing_interval": "HOURS"}', "--start", "2031-01-01T00:00Z")
    assert result.exit_code == 0
    result = run(
        runner,
        "preview",
        "--plan",
        '{"billing_interval": "HOURS"}',
        "--start",
        "2031-01-01T00:00Z",
        "--periods",
        "1000",
    )
    assert result.exit_code == 0, result.stderr
    periods = json.loads(result.stdout)
    assert len(periods) == 1000 and periods[-1]["end"] == "2031-02-11T16:00:00Z"


@pytest.mark.parametrize(("plan", "message"), INVALID_PLANS)
def test_invalid_plans_exit_2_naming_the_field(runner: CliRunner, plan: str, message: str) -> None:
    assert_usage_error(run(runner, "preview", "--plan", plan, "--start", "2031-01-31T00:00:00Z"), message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2031-01-31T00:00:00"], "--start: '2031-01-31T00:00:00' has no UTC offset"),
        (["--start", "2031-01-31"], "--start: '2031-01-31' has no UTC offset"),
        (["--start", "next tuesday"], "--start: 'next tuesday' is not an ISO 8601 date-time"),
        (["--start", "2031-01-31T00:00Z", "--timezone", "Mars/Olympus"], "--timezone: unknown IANA time zone"),
        (["--start", "2031-01-31T00:00Z", "--timezone", ""], "--timezone: unknown IANA time zone ''"),
        (["--start", "2031-01-31T00:00Z", "--timezone", "../etc/passwd"], "--timezone: unknown IANA time zone"),
        (["--start", "2031-01-31T00:00Z", "--periods", "0"], "'--periods'"),
        (["--start", "2031-01-31T00:00Z", "--periods", "1001"], "'--periods'"),
        ([], "Missing option '--start'"),
    ],
)
def test_invalid_start_timezone_or_count_exit_2(runner: CliRunner, args: list[str], message: str) -> None:
    assert_usage_error(run(runner, "preview", "--plan", '{"billing_interval": "DAYS"}', *args), message)


def test_schedule_beyond_the_calendar_is_a_clear_error(runner: CliRunner) -> None:
    plan = '{"billing_interval": "YEARS", "billing_interval_count": 1000}'
    result = run(runner, "preview", "--plan", plan, "--start", "2031-01-01T00:00Z", "--periods", "10")
    assert_usage_error(result, "outside the supported calendar")


def test_debug_adds_the_traceback(runner: CliRunner) -> None:
    plan = '{"billing_interval": "MONTHS", "billing_interval_count": 0}'
    result = run(runner, "--debug", "preview", "--plan", plan, "--start", "2031-01-31T00:00Z")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.splitlines()[-1] == "error: plan.billing_interval_count: must be at least 1"


# --- as a real process ---------------------------------------------------------------------------------


def console_script() -> Path:
    script = Path(sys.executable).parent / "enrollments"
    assert script.exists(), f"console script not installed next to {sys.executable}: pip install -e ."
    return script


def run_process(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_console_script_prints_the_schedule() -> None:
    completed = run_process(console_script(), *ZURICH_ARGS, "--periods", "5")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == json.dumps(ZURICH_EXPECTED, indent=2) + "\n"
    assert completed.stderr == ""


def test_console_script_reports_an_invalid_plan_on_one_line() -> None:
    plan = '{"billing_interval": "MONTHS", "billing_interval_count": 0}'
    completed = run_process(console_script(), "preview", "--plan", plan, "--start", "2031-01-31T00:00:00Z")
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr == "error: plan.billing_interval_count: must be at least 1\n"


def test_python_dash_m_starter_runs_the_same_cli() -> None:
    completed = run_process(sys.executable, "-m", "starter", *ZURICH_ARGS, "--periods", "2")
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == ZURICH_EXPECTED[:2]


# --- global options and db upgrade ---------------------------------------------------------------------


Seen = dict[str, tuple[bool, str, str, str]]


@pytest.fixture
def seen_state() -> Iterator[Seen]:
    """A hidden command that records the global options as it resolves them (debug, database, address, namespace)."""
    seen: Seen = {}

    @app.command("probe-state", hidden=True)
    def probe(ctx: typer.Context) -> None:
        options = state(ctx)
        seen["state"] = (options.debug, options.database_url, options.temporal_address, options.temporal_namespace)

    try:
        yield seen
    finally:
        app.registered_commands.pop()


def test_global_options_default_from_the_environment(runner: CliRunner, seen_state: Seen) -> None:
    env = {
        "DATABASE_URL": "sqlite+aiosqlite:///env.db",
        "TEMPORAL_ADDRESS": "temporal:7233",
        "TEMPORAL_NAMESPACE": "shop",
    }
    assert run(runner, "probe-state", env=env).exit_code == 0
    assert seen_state["state"] == (False, "sqlite+aiosqlite:///env.db", "temporal:7233", "shop")
    args = ["--debug", "--database-url", "sqlite+aiosqlite:///opt.db", "--address", "t:1", "--namespace", "ns"]
    assert run(runner, *args, "probe-state", env=env).exit_code == 0
    assert seen_state["state"] == (True, "sqlite+aiosqlite:///opt.db", "t:1", "ns")


def test_global_options_fall_back_to_the_defaults_in_the_current_directory(
    runner: CliRunner, seen_state: Seen, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(runner, "probe-state").exit_code == 0
    default = f"sqlite+aiosqlite:///{tmp_path / '.enrollments' / 'enrollments.db'}"
    assert seen_state["state"] == (False, default, "localhost:7233", "default")
    assert not (tmp_path / ".enrollments").exists(), "finding the database creates nothing"


def test_global_options_find_the_dev_stack_announced_above_the_current_directory(
    runner: CliRunner, seen_state: Seen, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    announced = Announcement(
        pid=4242,
        state_dir=str(tmp_path / ".enrollments"),
        temporal_address="127.0.0.1:7433",
        namespace="dev",
        web_ui="http://127.0.0.1:8433/namespaces/dev/workflows",
        database_url=f"sqlite+aiosqlite:///{tmp_path / '.enrollments' / 'enrollments.db'}",
    )
    (tmp_path / ".enrollments").mkdir()
    (tmp_path / ".enrollments" / STATE_FILE).write_text(announced.model_dump_json())
    below = tmp_path / "docs" / "examples"
    below.mkdir(parents=True)
    monkeypatch.chdir(below)
    assert run(runner, "probe-state").exit_code == 0
    assert seen_state["state"] == (False, announced.database_url, "127.0.0.1:7433", "dev")
    env = {"DATABASE_URL": "sqlite+aiosqlite:///env.db", "TEMPORAL_ADDRESS": "temporal:7233"}
    assert run(runner, "probe-state", env=env).exit_code == 0
    assert seen_state["state"] == (False, "sqlite+aiosqlite:///env.db", "temporal:7233", "dev")


def test_invalid_environment_is_a_usage_error(runner: CliRunner, seen_state: Seen) -> None:
    assert_usage_error(
        run(runner, "probe-state", env={"TEMPORAL_ADDRESS": "  "}), "TEMPORAL_ADDRESS: must not be empty"
    )


def test_blank_global_option_is_a_usage_error(runner: CliRunner, seen_state: Seen) -> None:
    assert_usage_error(run(runner, "--namespace", " ", "probe-state"), "--namespace: must not be empty")


@pytest.fixture
def upgrades(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replaces the migration with a recorder of the URLs it is asked to migrate."""
    calls: list[str] = []

    def record(url: str, revision: str = "head") -> None:
        calls.append(url)

    monkeypatch.setattr("starter.cli.system.upgrade", record)
    return calls


def test_db_upgrade_uses_database_url_from_env_global_option_or_its_own(runner: CliRunner, upgrades: list[str]) -> None:
    env = {"DATABASE_URL": "postgresql+asyncpg://app:secret@db/app"}
    result = run(runner, "db", "upgrade", env=env)
    assert result.exit_code == 0, result.stderr
    assert "secret" not in result.stdout and "postgresql+asyncpg://app:***@db/app" in result.stdout
    assert run(runner, "--database-url", "sqlite+aiosqlite:///g.db", "db", "upgrade", env=env).exit_code == 0
    assert (
        run(runner, "--database-url", "sqlite+aiosqlite:///g.db", "db", "upgrade", "--database-url", "x://").exit_code
        == 0
    )
    assert upgrades == ["postgresql+asyncpg://app:secret@db/app", "sqlite+aiosqlite:///g.db", "x://"]


def test_runtime_failures_exit_1_on_one_line(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(url: str, revision: str = "head") -> Any:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr("starter.cli.system.upgrade", fail)
    result = run(runner, "db", "upgrade", "--database-url", "postgresql+asyncpg://db/app")
    assert result.exit_code == 1
    assert result.stderr == "error: ConnectionRefusedError: [Errno 111] Connection refused\n"
    assert result.stdout == ""


def test_no_command_shows_help(runner: CliRunner) -> None:
    result = run(runner)
    assert "preview" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
