"""Demo data for ``enrollments dev --demo``: products with short plans and a few enrollments, idempotent.

The coffee and gym products renew every few minutes (MINUTES plans), so periods roll while you watch; the
newspaper is monthly, to show a calendar schedule. The enrollments have fixed ids; two of them are paused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from activities.persistence import open_store
from adapters.domain import BillingInterval, EnrollmentTerms, Product, ProductPlan
from starter.client import EnrollmentClientError, EnrollmentNotFound, EnrollmentsClient


@dataclass(frozen=True)
class DemoEnrollment:
    id: str
    terms: EnrollmentTerms
    pause: bool = False


def _demo(
    enrollment_id: str, product_id: str, user_id: str, quantity: int = 1, timezone: str = "UTC", *, pause: bool = False
) -> DemoEnrollment:
    terms = EnrollmentTerms(product_id=product_id, user_id=user_id, quantity=quantity, timezone=timezone)
    return DemoEnrollment(enrollment_id, terms, pause)


DEMO_PRODUCTS = (
    Product(
        id="demo-coffee-2min",
        title="Coffee beans, every 2 minutes (demo)",
        plan=ProductPlan(billing_interval=BillingInterval.MINUTES, billing_interval_count=2),
        price_amount=1_200,
        price_currency="CHF",
    ),
    Product(
        id="demo-gym-5min-trial",
        title="Gym membership, 5-minute periods after a 1-minute trial (demo)",
        plan=ProductPlan(
            billing_interval=BillingInterval.MINUTES,
            billing_interval_count=5,
            trial_interval=BillingInterval.MINUTES,
            trial_interval_count=1,
        ),
        price_amount=4_900,
        price_currency="CHF",
    ),
    Product(
        id="demo-news-monthly",
        title="Newspaper, monthly (demo)",
        plan=ProductPlan(billing_interval=BillingInterval.MONTHS),
        price_amount=2_500,
        price_currency="CHF",
    ),
)

DEMO_ENROLLMENTS = (
    _demo("demo-alice-coffee", "demo-coffee-2min", "alice", quantity=2, timezone="Europe/Zurich"),
    _demo("demo-bob-coffee", "demo-coffee-2min", "bob"),
    _demo("demo-carol-gym", "demo-gym-5min-trial", "carol", timezone="America/New_York"),
    _demo("demo-dave-gym", "demo-gym-5min-trial", "dave", pause=True),
    _demo("demo-erin-news", "demo-news-monthly", "erin", timezone="Asia/Tokyo"),
    _demo("demo-frank-news", "demo-news-monthly", "frank", pause=True),
)


async def seed_demo(
    client: EnrollmentsClient,
    database_url: str,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """Create the demo products and enrollments that do not exist yet; returns the ids of the new enrollments.

    Idempotent: products are upserted, an enrollment whose workflow exists is left as it is (a paused demo
    enrollment an operator resumed stays resumed). ``progress`` is called once per step with its label.
    """
    async with open_store(database_url) as store:
        now = datetime.now(UTC)
        for product in DEMO_PRODUCTS:
            await store.products.upsert(product, now=now)
            if progress:
                progress(f"product {product.id}")
    created: list[str] = []
    for demo in DEMO_ENROLLMENTS:
        try:
            await client.get_enrollment(demo.id)
            exists = True
        except EnrollmentNotFound:
            exists = False
        except EnrollmentClientError:
            exists = True  # its workflow exists but failed: left for the operator to look at
        if not exists:
            await client.create_enrollment(demo.terms, enrollment_id=demo.id)
            if demo.pause:
                await client.pause(demo.id, reason="demo: paused by an operator")
            created.append(demo.id)
        if progress:
            progress(f"enrollment {demo.id}")
    return created


def demo_steps() -> int:
    return len(DEMO_PRODUCTS) + len(DEMO_ENROLLMENTS)
