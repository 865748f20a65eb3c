"""The product catalogue: plan products enrollments are made of."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete as delete_rows
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.persistence.errors import ProductNotFound
from activities.persistence.models import EnrollmentRow, ProductPlanRow, ProductRow
from activities.persistence.rows import product_of
from activities.persistence.transactions import Transactions, require_aware
from adapters.domain import Product, ProductPlan


async def product_at(session: AsyncSession, product_id: str, version: int | None) -> Product | None:
    """``product_id`` with the plan of ``version`` (None, or not kept: the current plan); None when unknown."""
    row = await session.get(ProductRow, product_id)
    if row is None:
        return None
    product = product_of(row)
    if version is None or version == row.version:
        return product
    kept = await session.get(ProductPlanRow, (product_id, version))
    if kept is None:
        return product
    return product.model_copy(update={"plan": ProductPlan.model_validate(kept.plan), "version": version})


class ProductRepository:
    """Products by id; each method is one transaction (or joins the unit of work it runs in)."""

    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    async def upsert(self, product: Product, *, now: datetime) -> Product:
        """Insert ``product`` or replace the stored one with the same id (``created`` is kept).

        A new plan (or new prices) makes the product's next plan version; enrollments on an earlier one stay on
        it until they change (``enrollments product migrate``). The ``version`` given is ignored.
        """
        require_aware("now", now)

        async def upsert(session: AsyncSession) -> Product:
            row = await session.get(ProductRow, product.id)
            plan = None if product.plan is None else product.plan.model_dump(mode="json")
            if row is None:
                row = ProductRow(id=product.id, created=now, version=1)
                session.add(row)
            elif plan is not None and row.plan is not None and plan != row.plan:
                row.version += 1
            row.type = product.type.value
            row.plan = plan
            row.title = product.title
            row.price_amount = product.price_amount
            row.price_currency = product.price_currency
            row.updated = now
            await session.flush()
            if plan is not None and await session.get(ProductPlanRow, (product.id, row.version)) is None:
                session.add(ProductPlanRow(product_id=product.id, version=row.version, plan=plan, created=now))
            return product_of(row)

        return await self._transactions.write(upsert)

    async def get(self, product_id: str, version: int | None = None) -> Product | None:
        """The product with its current plan, or with the plan of ``version`` (an earlier one kept for the
        enrollments on it; the current plan when that version is not kept)."""
        async with self._transactions.read() as session:
            return await product_at(session, product_id, version)

    async def behind(self, product_id: str) -> list[str]:
        """The ids of the enrollments on ``product_id`` that are not TERMINATED and not on its latest plan version."""
        async with self._transactions.read() as session:
            row = await session.get(ProductRow, product_id)
            if row is None:
                raise ProductNotFound(product_id)
            ids = await session.scalars(
                select(EnrollmentRow.id)
                .where(
                    EnrollmentRow.product_id == product_id,
                    EnrollmentRow.status != "TERMINATED",
                    or_(EnrollmentRow.plan_version.is_(None), EnrollmentRow.plan_version != row.version),
                )
                .order_by(EnrollmentRow.id)
            )
            return list(ids)

    async def all(self) -> list[Product]:
        """All products, ordered by id."""
        async with self._transactions.read() as session:
            rows = await session.scalars(select(ProductRow).order_by(ProductRow.id))
            return [product_of(row) for row in rows]

    async def delete(self, product_id: str) -> None:
        """Delete a product no enrollment refers to; raises ``ValueError`` naming it when one does."""

        async def delete(session: AsyncSession) -> None:
            row = await session.get(ProductRow, product_id)
            if row is None:
                raise ProductNotFound(product_id)
            referrer = await session.scalar(
                select(EnrollmentRow.id).where(EnrollmentRow.product_id == product_id).limit(1)
            )
            if referrer is not None:
                raise ValueError(f"product {product_id!r} cannot be deleted: enrollment {referrer!r} refers to it")
            await session.execute(delete_rows(ProductPlanRow).where(ProductPlanRow.product_id == product_id))
            await session.delete(row)

        await self._transactions.write(delete)
