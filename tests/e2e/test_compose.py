"""docker-compose.yml, validated by Debian's ``docker-compose config`` (Docker itself does not run here)."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
COMPOSE_FILE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The compose file as ``docker-compose config`` resolves it (fails, never skips, without the tool)."""
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.fail(
            "docker-compose is required to validate docker-compose.yml: "
            "run `apt-get install -y docker-compose` (.ci/run does this in CI)",
            pytrace=False,
        )
    completed = subprocess.run(
        [tool, "--file", str(COMPOSE_FILE), "--project-directory", str(ROOT), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert completed.returncode == 0, completed.stderr
    resolved: dict[str, Any] = yaml.safe_load(completed.stdout)
    return resolved


def target_of(volume: str | dict[str, Any]) -> str:
    """A volume's path in the container, from the short (``src:dst:ro``) or the long syntax."""
    if isinstance(volume, dict):
        return str(volume["target"])
    return volume.split(":")[1]


def published_and_target(port: str | dict[str, Any]) -> tuple[str, str]:
    """A port mapping's host and container port, from ``[ip:]host:container[/proto]`` or the long syntax."""
    if isinstance(port, dict):
        return str(port.get("published")), str(port["target"])
    parts = port.split("/")[0].split(":")
    return parts[-2], parts[-1]


def test_the_stack_has_every_service(config: dict[str, Any]) -> None:
    assert set(config["services"]) == {
        "postgresql",
        "temporal-schema",
        "temporal",
        "temporal-register",
        "temporal-ui",
        "worker",
    }


def test_images_are_pinned(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: image {image!r} is not pinned to a version"
    services = config["services"]
    assert services["temporal"]["image"].startswith("temporalio/server:")
    assert services["temporal-schema"]["image"].startswith("temporalio/admin-tools:")
    assert services["temporal-register"]["image"] == services["temporal-schema"]["image"]
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")


def test_separate_databases_for_temporal_and_the_app(config: dict[str, Any]) -> None:
    init_script = (ROOT / "deploy" / "postgres" / "init-databases.sh").read_text()
    for database in ("temporal", "temporal_visibility", "enrollments"):
        assert f"CREATE DATABASE {database} " in init_script
    targets = [target_of(volume) for volume in config["services"]["postgresql"]["volumes"]]
    assert any(target.startswith("/docker-entrypoint-initdb.d/") for target in targets), targets
    temporal = config["services"]["temporal"]["environment"]
    assert temporal["DBNAME"] == "temporal" and temporal["VISIBILITY_DBNAME"] == "temporal_visibility"
    assert temporal["DB"] == "postgres12"
    worker = config["services"]["worker"]["environment"]
    assert worker["DATABASE_URL"].startswith("postgresql://enrollments:")
    assert worker["DATABASE_URL"].endswith("@postgresql:5432/enrollments")


def test_schema_setup_and_registration_run_before_their_dependents(config: dict[str, Any]) -> None:
    services = config["services"]
    assert services["temporal"]["depends_on"]["temporal-schema"]["condition"] == "service_completed_successfully"
    assert services["worker"]["depends_on"]["temporal-register"]["condition"] == "service_completed_successfully"
    register = (ROOT / "deploy" / "temporal" / "register.sh").read_text()
    from workflows.search_attributes import ALL_SEARCH_ATTRIBUTES

    for key in ALL_SEARCH_ATTRIBUTES:
        assert key.name in register
    assert "temporal operator search-attribute create" in register
    assert "temporal operator namespace create" in register
    schema = (ROOT / "deploy" / "temporal" / "setup-schema.sh").read_text()
    assert "setup-schema" in schema and "update-schema" in schema


def test_ui_on_8080_and_a_scalable_worker(config: dict[str, Any]) -> None:
    ui_ports = [published_and_target(port) for port in config["services"]["temporal-ui"]["ports"]]
    assert ("8080", "8080") in ui_ports, ui_ports
    worker = config["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker, "fixed names/host ports block --scale worker=3"
    assert worker["build"]["dockerfile"] == "Dockerfile" and (ROOT / "Dockerfile").is_file()
    command = " ".join(worker["command"])
    assert command.index("enrollments db upgrade") < command.index("enrollments worker")
    assert worker["environment"]["ENROLLMENTS_METRICS_PORT"] == "9464"


def test_dockerfile_pins_its_base_and_runs_migrations_first() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    (base,) = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert ":" in base and not base.endswith(":latest")
    assert "enrollments db upgrade && exec enrollments worker" in dockerfile
    assert "USER enrollments" in dockerfile
