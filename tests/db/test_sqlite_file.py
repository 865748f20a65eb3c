"""A SQLite file deleted or replaced under a running process: every later use fails loudly, nothing is written."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from activities.persistence import open_store
from activities.persistence.database import DatabaseFileReplaced
from activities.persistence.migrate import upgrade_async
from adapters.domain import BillingInterval, Product, ProductPlan

NOW = datetime(2031, 1, 1, tzinfo=UTC)
PRODUCT = Product(id="p", plan=ProductPlan(billing_interval=BillingInterval.MONTHS))


def _pull_the_file_away(path: Path, how: str) -> None:
    """What an operator's ``rm`` (or a restore from a copy) does to the database file under the process."""
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        shutil.copy(path, path.with_name("copy.db"))
        path.unlink()
        path.with_name("copy.db").rename(path)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_ghost_database_file_is_refused(tmp_path: Path, how: str) -> None:
    path = tmp_path / "enrollments.db"
    await upgrade_async(f"sqlite:///{path}")
    async with open_store(f"sqlite:///{path}") as store:
        await store.products.upsert(PRODUCT, now=NOW)
        _pull_the_file_away(path, how)
        with pytest.raises(DatabaseFileReplaced, match=f"was {how} while in use; restart the process"):
            await store.products.get("p")
        with pytest.raises(DatabaseFileReplaced):
            await store.products.upsert(PRODUCT.model_copy(update={"title": "written to a ghost?"}), now=NOW)
    if how == "replaced":
        async with open_store(f"sqlite:///{path}") as fresh:
            product = await fresh.products.get("p")
            assert product is not None and product.title is None, "the write reached no file"
