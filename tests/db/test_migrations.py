"""The shipped Alembic migrations against the SQLAlchemy models, on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from activities.persistence import Base, create_engine
from activities.persistence.migrate import current_revision, downgrade_async, head_revision, upgrade, upgrade_async
from starter.cli import app
from tests.conftest import Databases


async def schema_differences(database_url: str, metadata: MetaData) -> list[Any]:
    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    engine = create_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


async def table_names(database_url: str) -> set[str]:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def test_migrated_schema_matches_models(database_url: str) -> None:
    assert await schema_differences(database_url, Base.metadata) == []
    assert await current_revision(database_url) == head_revision()


async def test_comparison_sees_drift(database_url: str) -> None:
    # Guards the test above against a comparison that reports nothing at all.
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["enrollments"].append_column(Column("extra", Integer(), nullable=True))
    differences = await schema_differences(database_url, drifted)
    assert [difference[0] for difference in differences] == ["add_column"]


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_upgrade_and_downgrade(test_databases: Databases, backend: str) -> None:
    url = await test_databases.scratch_url(backend)
    assert await current_revision(url) is None
    await upgrade_async(url)
    expected = {table.name for table in Base.metadata.sorted_tables} | {"alembic_version"}
    assert await table_names(url) == expected
    await upgrade_async(url)  # already at head: nothing to do
    await downgrade_async(url, "base")
    assert await table_names(url) == {"alembic_version"} and await current_revision(url) is None
    await upgrade_async(url)
    assert await schema_differences(url, Base.metadata) == []


async def test_sync_upgrade(test_databases: Databases) -> None:
    url = await test_databases.scratch_url("sqlite")
    with pytest.raises(RuntimeError, match="await upgrade_async"):
        upgrade(url)
    await asyncio.to_thread(upgrade, url)
    assert await current_revision(url) == head_revision()


def test_db_upgrade_migrates_a_sqlite_database(tmp_path: Path) -> None:
    runner = CliRunner()
    database = tmp_path / "cli.db"
    result = runner.invoke(app, ["db", "upgrade", "--database-url", f"sqlite+aiosqlite:///{database}"])
    assert result.exit_code == 0, result.stderr
    with sqlite3.connect(database) as connection:
        (version,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert version == head_revision()
    assert runner.invoke(app, ["db", "upgrade", "--database-url", f"sqlite+aiosqlite:///{database}"]).exit_code == 0
