"""The store: one repository per aggregate over one engine's transactions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.persistence.billing import BillingRepository
from activities.persistence.changes import ChangeRepository
from activities.persistence.database import create_engine, session_factory
from activities.persistence.deliveries import DeliveryRepository
from activities.persistence.enrollments import EnrollmentRepository
from activities.persistence.events import EventRepository
from activities.persistence.payments import DunningRepository
from activities.persistence.products import ProductRepository
from activities.persistence.transactions import Transactions
from activities.persistence.usage import UsageRepository
from activities.persistence.webhooks import WebhookRepository


@dataclass(frozen=True)
class Store:
    """Products, enrollments (with their log), billing (periods and orders), usage, the event outbox,
    webhooks, and dunning with payments, on one database."""

    transactions: Transactions
    products: ProductRepository
    enrollments: EnrollmentRepository
    billing: BillingRepository
    changes: ChangeRepository
    usage: UsageRepository
    events: EventRepository
    webhooks: WebhookRepository
    deliveries: DeliveryRepository
    dunning: DunningRepository

    @classmethod
    def over(cls, sessions: async_sessionmaker[AsyncSession]) -> Store:
        transactions = Transactions(sessions)
        return cls(
            transactions=transactions,
            products=ProductRepository(transactions),
            enrollments=EnrollmentRepository(transactions),
            billing=BillingRepository(transactions),
            changes=ChangeRepository(transactions),
            usage=UsageRepository(transactions),
            events=EventRepository(transactions),
            webhooks=WebhookRepository(transactions),
            deliveries=DeliveryRepository(transactions),
            dunning=DunningRepository(transactions),
        )


@asynccontextmanager
async def open_store(database_url: str, *, create_missing: bool = True, **engine_options: Any) -> AsyncIterator[Store]:
    """A store on its own engine for ``database_url``, disposed when the block ends (see :func:`create_engine`)."""
    engine = create_engine(database_url, create_missing=create_missing, **engine_options)
    try:
        yield Store.over(session_factory(engine))
    finally:
        await engine.dispose()
