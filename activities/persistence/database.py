"""Database URLs, engines and sessions: one code path for PostgreSQL (asyncpg) and SQLite (aiosqlite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from activities.persistence.errors import DatabaseNotFound

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another writer's lock before giving up."""

READ_ONLY_OPTION = "enrollments_read_only"
"""Connection execution option: begin a deferred (shared) SQLite transaction instead of an immediate one."""

_SCHEME_ALIASES = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


def normalize_database_url(url: str) -> str:
    """``url`` with the async driver this project uses: asyncpg for PostgreSQL, aiosqlite for SQLite.

    ``postgresql://`` and ``postgres://`` become ``postgresql+asyncpg://``, ``sqlite:///x`` becomes
    ``sqlite+aiosqlite:///x``; URLs already naming those drivers are returned unchanged. Anything else
    raises ``ValueError`` naming the scheme.
    """
    scheme, separator, rest = url.strip().partition("://")
    if not separator or not scheme:
        raise ValueError("not a database URL (expected postgresql://… or sqlite:///…)")
    driver = _SCHEME_ALIASES.get(scheme.lower())
    if driver is None:
        raise ValueError(
            f"unsupported database URL scheme {scheme!r}: use postgresql:// (asyncpg) or sqlite:/// (aiosqlite)"
        )
    return f"{driver}://{rest}"


def redacted(url: str) -> str:
    """``url`` with its password hidden, for messages and logs (``<database>`` when it is not a URL)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<database>"


def is_sqlite(url: str | URL) -> bool:
    """Whether ``url`` points at a SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_file(url: URL) -> Path:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:") or url.query.get("mode") == "memory":
        # Every pooled connection would open its own empty database, so writes would seem to vanish.
        raise ValueError("in-memory SQLite is not supported: use a database file, e.g. sqlite:///./enrollments.db")
    return Path(database.removeprefix("file:"))


def create_engine(url: str, *, create_missing: bool = True, **engine_options: Any) -> AsyncEngine:
    """An async engine for ``url`` (normalised first).

    SQLite connections get foreign keys, WAL and a busy timeout, and transactions begin with
    ``BEGIN IMMEDIATE`` (unless the connection carries the :data:`READ_ONLY_OPTION` execution option):
    two writers then queue on the lock instead of failing with "database is locked" when the second one
    upgrades a stale read snapshot. The file and its parent directory are created when missing, unless
    ``create_missing`` is False: then a missing file raises :class:`DatabaseNotFound` and nothing is created
    (clients and the command line read a database, they never make one).
    """
    parsed = make_url(normalize_database_url(url))
    if parsed.get_backend_name() != "sqlite":
        engine_options.setdefault("pool_pre_ping", True)
        return create_async_engine(parsed, **engine_options)

    path = _sqlite_file(parsed).expanduser()
    if not create_missing and not path.is_file():
        raise DatabaseNotFound(str(path.resolve()))
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(parsed, **engine_options)
    _install_sqlite_hooks(engine, path.resolve())
    return engine


class DatabaseFileReplaced(RuntimeError):
    """The SQLite file an engine uses was deleted or replaced under it; its connections would write to a ghost."""


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _install_sqlite_hooks(engine: AsyncEngine, path: Path) -> None:
    opened: list[tuple[int, int] | None] = []  # the file's identity when the engine first connected

    def refuse_a_ghost() -> None:
        identity = _file_identity(path)
        if not opened:
            opened.append(identity)
        elif identity != opened[0]:
            what = "deleted" if identity is None else "replaced"
            raise DatabaseFileReplaced(
                f"the SQLite database {path} was {what} while in use; restart the process (nothing was written)"
            )

    @event.listens_for(engine.sync_engine, "do_connect")
    def _before_connect(*_args: Any) -> None:
        # Before SQLite opens (and so re-creates) a deleted file, which may then get the old inode number back.
        if opened:
            refuse_a_ghost()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(_dbapi_connection: Any, _record: ConnectionPoolEntry, _proxy: Any) -> None:
        # A pooled connection keeps the file it opened: were the file deleted or replaced, every write would go
        # to a file nobody else sees. Fail loudly instead, on every use, until the process is restarted.
        refuse_a_ghost()

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # The driver's own implicit BEGIN is deferred and skips SELECTs; SQLAlchemy emits BEGIN instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions on ``engine`` whose objects stay readable after commit (``expire_on_commit=False``)."""
    return async_sessionmaker(engine, expire_on_commit=False)
