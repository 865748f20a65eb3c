"""Run the Alembic migrations shipped in the ``migrations`` package, on PostgreSQL or SQLite.

No ``alembic.ini`` is needed: the configuration is built in code. ``upgrade_async`` runs on the caller's
event loop; ``upgrade`` is the synchronous entry point for scripts and CLIs and must not be called while
an event loop is running in the thread (it raises ``RuntimeError`` then).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

import migrations
from activities.persistence.database import create_engine, normalize_database_url

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration for ``database_url`` that uses the packaged migration scripts."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # The value goes through ConfigParser interpolation, where a literal "%" (URL-escaped passwords) is "%%".
    config.set_main_option("sqlalchemy.url", normalize_database_url(database_url).replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision of the shipped migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:  # pragma: no cover - the package always ships a revision
        raise RuntimeError(f"no migration scripts in {MIGRATIONS_DIR}")
    return head


async def _run(database_url: str, operation: str, revision: str) -> None:
    config = alembic_config(database_url)

    def run(connection: Connection) -> None:
        # env.py uses this connection instead of opening its own (and calling asyncio.run).
        config.attributes["connection"] = connection
        if operation == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)

    engine = create_engine(database_url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run)
    finally:
        await engine.dispose()


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    """Migrate the database at ``database_url`` up to ``revision`` (default: the newest)."""
    await _run(database_url, "upgrade", revision)


async def downgrade_async(database_url: str, revision: str) -> None:
    """Migrate the database at ``database_url`` down to ``revision`` (``"base"`` drops every table)."""
    await _run(database_url, "downgrade", revision)


def upgrade(database_url: str, revision: str = "head") -> None:
    """Synchronous :func:`upgrade_async` for scripts and CLIs; not callable inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(upgrade_async(database_url, revision))
        return
    raise RuntimeError("upgrade() cannot run inside a running event loop: await upgrade_async() instead")


async def current_revision(database_url: str) -> str | None:
    """The revision the database at ``database_url`` is at; None when it was never migrated."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
    finally:
        await engine.dispose()
