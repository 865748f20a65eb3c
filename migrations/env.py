"""Alembic environment: async engines (asyncpg, aiosqlite) driven through ``run_sync``.

``activities.persistence.migrate`` passes an open connection in ``config.attributes["connection"]``; the
``alembic`` command line (with an ini file naming ``sqlalchemy.url``) makes its own engine here.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from activities.persistence.database import create_engine, normalize_database_url
from activities.persistence.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: set sqlalchemy.url in the Alembic configuration")
    return normalize_database_url(url)


def _run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_engine(_url(), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_with)
            await connection.commit()
    finally:
        await engine.dispose()


def _run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
elif isinstance(config.attributes.get("connection"), Connection):
    _run_with(config.attributes["connection"])
else:
    asyncio.run(_run_online())
