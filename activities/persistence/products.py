"""The product catalogue: plan products enrollments are made of."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.persistence.errors import ProductNotFound
from activities.persistence.models import EnrollmentRow, ProductRow
from activities.persistence.rows import product_of
from activities.persistence.transactions import Transactions, require_aware
from adapters.domain import Product


class ProductRepository:
    """Products by id; each method is one transaction."""

    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    async def upsert(self, product: Product, *, now: datetime) -> Product:
        """Insert ``product`` or replace the stored one with the same id (``created`` is kept)."""
        require_aware("now", now)

        async def upsert(session: AsyncSession) -> Product:
            row = await session.get(ProductRow, product.id)
            if row is None:
                row = ProductRow(id=product.id, created=now)
                session.add(row)
            row.type = product.type.value
            row.plan = None if product.plan is None else product.plan.model_dump(mode="json")
            row.title = product.title
            row.price_amount = product.price_amount
            row.price_currency = product.price_currency
            row.updated = now
            return product_of(row)

        return await self._transactions.write(upsert)

    async def get(self, product_id: str) -> Product | None:
        async with self._transactions.read() as session:
            row = await session.get(ProductRow, product_id)
            return None if row is None else product_of(row)

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
            await session.delete(row)

        await self._transactions.write(delete)
