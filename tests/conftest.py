"""Shared database fixtures: real PostgreSQL and SQLite, never mocks.

How to use them:

- ``database_url`` is parametrized over ``postgresql`` and ``sqlite``, so every test that requests it (or
  ``store``) runs once per backend. It yields the URL of a migrated database. Each backend's database
  is created once per test session (PostgreSQL: ``enr_test_<random>`` created on ``TEST_POSTGRES_URL``,
  default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``; SQLite: a temporary file) and dropped
  at the end of the session.
- **Clean state per test**: all tables are emptied when ``database_url`` is set up, so a test sees no
  rows from earlier tests and may use fixed ids. Do not rely on rows surviving between tests. Code under
  test may open its own engines on the URL; dispose them before the test ends.
- ``engine``, ``sessions`` and ``store`` are built on ``database_url`` and disposed after the test.
- ``test_databases.scratch_url(backend)`` gives a fresh, unmigrated database for migration tests.

If PostgreSQL cannot be reached, the PostgreSQL half of the tests fails with a message saying so.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import NullPool

from activities.persistence import Base, Store, create_engine, normalize_database_url, session_factory
from activities.persistence.migrate import upgrade_async

POSTGRES_URL_ENV = "TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
BACKENDS = ("postgresql", "sqlite")
_CONNECT_TIMEOUT_SECONDS = 5


class Databases:
    """The session's test databases, created on first use and dropped by :meth:`close`."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._admin_url = normalize_database_url(os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL))
        self._migrated: dict[str, str] = {}
        self._postgres_databases: list[str] = []
        self._sqlite_files: list[Path] = []
        self._postgres_error: str | None = None

    async def url(self, backend: str) -> str:
        """The session's migrated database of ``backend`` (``postgresql`` or ``sqlite``)."""
        if backend not in self._migrated:
            url = await self.scratch_url(backend)
            await upgrade_async(url)
            self._migrated[backend] = url
        return self._migrated[backend]

    async def scratch_url(self, backend: str) -> str:
        """A new, empty and unmigrated database of ``backend``, dropped at the end of the session."""
        name = f"enr_test_{uuid.uuid4().hex[:12]}"
        if backend == "sqlite":
            path = self._directory / f"{name}.db"
            self._sqlite_files.append(path)
            return f"sqlite+aiosqlite:///{path}"
        if backend != "postgresql":
            raise ValueError(f"unknown test database backend {backend!r}")
        await self._admin(f'CREATE DATABASE "{name}"')
        self._postgres_databases.append(name)
        return make_url(self._admin_url).set(database=name).render_as_string(hide_password=False)

    async def clear(self, backend: str) -> None:
        """Delete every row of the migrated database of ``backend``."""
        tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
        engine = create_engine(await self.url(backend), poolclass=NullPool)
        try:
            async with engine.begin() as connection:
                if backend == "postgresql":
                    # A connection leaked by an earlier test must not make this hang.
                    await connection.execute(text("SET LOCAL lock_timeout = '10s'"))
                    quoted = ", ".join(f'"{table}"' for table in tables)
                    await connection.execute(text(f"TRUNCATE TABLE {quoted} RESTART IDENTITY CASCADE"))
                else:
                    for table in tables:
                        await connection.execute(text(f'DELETE FROM "{table}"'))
        finally:
            await engine.dispose()

    async def close(self) -> None:
        for name in self._postgres_databases:
            # FORCE: engines a test forgot to dispose must not keep the database alive.
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._remove_sqlite_files()

    def _remove_sqlite_files(self) -> None:
        for path in self._sqlite_files:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

    async def _admin(self, statement: str) -> None:
        if self._postgres_error is not None:
            pytest.fail(self._postgres_error, pytrace=False)
        engine = create_engine(
            self._admin_url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"timeout": _CONNECT_TIMEOUT_SECONDS},
        )
        try:
            async with engine.connect() as connection:
                await connection.execute(text(statement))
        except (OSError, TimeoutError, SQLAlchemyError) as error:
            shown = make_url(self._admin_url).render_as_string(hide_password=True)
            self._postgres_error = (
                f"PostgreSQL is not reachable at {shown} ({type(error).__name__}: {error}). Start it "
                f"(pg_ctlcluster <version> main start) or point {POSTGRES_URL_ENV} at a server."
            )
        finally:
            await engine.dispose()
        if self._postgres_error is not None:
            pytest.fail(self._postgres_error, pytrace=False)


@pytest.fixture(scope="session")
async def test_databases(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Databases]:
    databases = Databases(tmp_path_factory.mktemp("databases"))
    yield databases
    await databases.close()


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, test_databases: Databases) -> str:
    """URL of a migrated, emptied database; the test runs once on PostgreSQL and once on SQLite."""
    backend: str = request.param
    url = await test_databases.url(backend)
    await test_databases.clear(backend)
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@pytest.fixture
def store(sessions: async_sessionmaker[AsyncSession]) -> Store:
    return Store.over(sessions)


pytest_plugins = ["tests.support.temporal_env", "tests.support.dev_stack_env", "tests.support.cli_env"]

TEST_KINDS = ("unit", "db", "workflows", "e2e", "chaos")
"""The folders of ``tests/``; each test is marked with its folder's kind (``pytest -m unit`` and so on)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        kind = item.path.relative_to(root).parts[0]
        if kind in TEST_KINDS:
            item.add_marker(getattr(pytest.mark, kind))
