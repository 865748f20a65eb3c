"""``enrollments dev`` as a user runs it: addresses, demo data, restart keeps workflows, nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest
from typer.testing import CliRunner

from starter.cli import app
from starter.devtools.demo import DEMO_ENROLLMENTS
from starter.devtools.stack import DevConfig, free_port, search_attribute_flags, server_command
from starter.devtools.state import STATE_FILE, Announcement, DevStackError, StateDirLock

READY_LINE = "dev stack is running"


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return not alive(pid)


class DevProcess:
    """``python -m starter dev`` in a temporary working directory, its output collected by reader threads."""

    def __init__(self, workdir: Path, temporal_port: int, ui_port: int, *extra: str) -> None:
        env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "TEMPORAL_ADDRESS")}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "starter",
                "dev",
                "--temporal-port",
                str(temporal_port),
                "--ui-port",
                str(ui_port),
                *extra,
            ],
            cwd=workdir,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self._out), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str] | None, lines: list[str]) -> None:
        assert stream is not None
        for line in stream:
            lines.append(line)

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def wait_ready(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not (READY_LINE in self.stdout and "  state " in self.stdout):
            if time.monotonic() > deadline or self.process.poll() is not None:
                pytest.fail(f"dev stack not ready:\n{self.stdout}\n{self.stderr}")
            time.sleep(0.1)

    def finish(self, seconds: float = 30) -> int:
        self.process.wait(timeout=seconds)
        for reader in self._readers:
            reader.join(timeout=5)
        return self.process.returncode


def status_json(config: DevConfig, enrollment_id: str) -> dict[str, object]:
    result = CliRunner().invoke(
        app,
        [
            "--address",
            config.address,
            "--database-url",
            config.effective_database_url,
            "status",
            enrollment_id,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    loaded: dict[str, object] = json.loads(result.stdout)
    return loaded


def test_server_command_registers_every_search_attribute() -> None:
    flags = search_attribute_flags()
    assert flags == [
        "--search-attribute",
        "EnrollmentStatus=Keyword",
        "--search-attribute",
        "EnrollmentProductId=Keyword",
        "--search-attribute",
        "EnrollmentUserId=Keyword",
        "--search-attribute",
        "EnrollmentNextPeriodAt=Datetime",
        "--search-attribute",
        "EnrollmentHealth=Keyword",
    ]
    command = server_command(DevConfig(state_dir=Path("/state")))
    assert command[1:3] == ["server", "start-dev"]
    assert command[command.index("--ip") + 1] == "127.0.0.1"
    assert command[command.index("--db-filename") + 1] == "/state/temporal.db"


def test_dev_runs_stops_restarts_and_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    temporal_port, ui_port = free_port(), free_port()
    config = DevConfig(state_dir=tmp_path / ".enrollments", temporal_port=temporal_port, ui_port=ui_port)

    # First run: demo data, the addresses, then SIGTERM stops worker and server cleanly.
    first = DevProcess(tmp_path, temporal_port, ui_port, "--demo")
    try:
        first.wait_ready()
        assert f"Temporal gRPC  127.0.0.1:{temporal_port}" in first.stdout
        assert f"Web UI         http://127.0.0.1:{ui_port}/namespaces/default/workflows" in first.stdout
        assert f"sqlite+aiosqlite:///{tmp_path / '.enrollments' / 'enrollments.db'}" in first.stdout
        (server_pid,) = children_of(first.process.pid)
        assert alive(server_pid)
        paused = status_json(config, "demo-dave-gym")
        assert paused["status"] == "PAUSED"
        assert status_json(config, "demo-alice-coffee")["status"] == "ACTIVE"
        # The stack announces itself in its state directory; the CLI finds it from below the checkout.
        announced = json.loads((tmp_path / ".enrollments" / "dev-stack.json").read_text())
        assert announced["pid"] == first.process.pid and announced["temporal_address"] == config.address
        (tmp_path / "docs").mkdir()
        monkeypatch.chdir(tmp_path / "docs")
        for name in ("DATABASE_URL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE"):
            monkeypatch.delenv(name, raising=False)
        listed = CliRunner().invoke(app, ["list", "--json"])
        assert listed.exit_code == 0, listed.stderr
        assert sorted(item["id"] for item in json.loads(listed.stdout)) == sorted(demo.id for demo in DEMO_ENROLLMENTS)
        assert CliRunner().invoke(app, ["status", "demo-dave-gym"]).exit_code == 0, "and its Temporal server"
        first.process.send_signal(signal.SIGTERM)
        assert first.finish() == 0, first.stderr
        assert "stopped" in first.stderr
        assert wait_gone(server_pid, 5)
    finally:
        if first.process.poll() is None:
            first.process.kill()
            first.process.wait()
    assert (tmp_path / ".enrollments" / "temporal.db").is_file()

    # Second run on the same state: the workflows are still there, --demo adds nothing. Then the parent is
    # killed outright: the server must not outlive it.
    second = DevProcess(tmp_path, temporal_port, ui_port, "--demo")
    try:
        second.wait_ready()
        (server_pid,) = children_of(second.process.pid)
        assert "demo: 0 enrollments created" in second.stderr
        again = status_json(config, "demo-dave-gym")
        assert again["status"] == "PAUSED" and again["number"] == paused["number"]
        assert len(DEMO_ENROLLMENTS) == 6
        second.process.kill()
        second.process.wait(timeout=10)
        assert wait_gone(server_pid, 10), "the Temporal dev server outlived its killed parent"
    finally:
        if second.process.poll() is None:
            second.process.kill()
            second.process.wait()


def test_dev_refuses_a_port_in_use(tmp_path: Path, dev_stack: object) -> None:
    from tests.support.dev_stack_env import ThreadedDevStack

    assert isinstance(dev_stack, ThreadedDevStack)
    result = CliRunner().invoke(
        app,
        ["dev", "--temporal-port", str(dev_stack.config.temporal_port), "--state-dir", str(tmp_path)],
    )
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith(
        f"error: port {dev_stack.config.temporal_port} on 127.0.0.1 is in use"
    )
    assert "Traceback" not in result.stderr


def test_dev_refuses_a_state_directory_in_use_naming_it_and_the_running_pid(dev_stack: object) -> None:
    from tests.support.dev_stack_env import ThreadedDevStack

    assert isinstance(dev_stack, ThreadedDevStack)
    state_dir = dev_stack.config.state_dir
    ports = ["--temporal-port", str(free_port()), "--ui-port", str(free_port())]
    result = CliRunner().invoke(app, ["dev", "--state-dir", str(state_dir), *ports])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: the state directory {state_dir.resolve()} is in use by another `enrollments dev` "
        f"(pid {os.getpid()}); stop that one first, or give this one another --state-dir"
    )
    assert json.loads((state_dir / STATE_FILE).read_text())["pid"] == os.getpid(), "the running stack's note is kept"


HOLD_THE_LOCK = """
import os, sys, time
from pathlib import Path
from starter.devtools.state import Announcement, StateDirLock
note = Announcement(pid=os.getpid(), state_dir=sys.argv[1], temporal_address="-", namespace="-", web_ui="-",
                    database_url="-")
StateDirLock(Path(sys.argv[1])).acquire(note)
print("locked", flush=True)
time.sleep(60)
"""


def test_a_killed_stack_leaves_no_stale_lock(tmp_path: Path) -> None:
    note = Announcement(
        pid=os.getpid(), state_dir=str(tmp_path), temporal_address="-", namespace="-", web_ui="-", database_url="-"
    )
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(DevStackError, match=rf"in use by another `enrollments dev` \(pid {holder.pid}\)"):
            StateDirLock(tmp_path).acquire(note)
    finally:
        holder.kill()
        holder.wait()
    lock = StateDirLock(tmp_path)
    lock.acquire(note)  # the kernel dropped the killed holder's lock: nothing stale to clean up
    lock.release()
    assert json.loads((tmp_path / STATE_FILE).read_text())["pid"] == os.getpid()
