"""The store on real PostgreSQL and SQLite: idempotency, races, constraints, paging, numbers."""

from __future__ import annotations

import asyncio
import pickle
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.persistence import (
    CREATED_EVENT,
    EnrollmentConflict,
    EnrollmentNotFound,
    OrderNotFound,
    ProductNotFound,
    Store,
    UsageConflict,
    create_engine,
    enrollment_number,
    normalize_database_url,
    normalize_number,
    order_number,
    session_factory,
)
from activities.persistence.database import is_sqlite
from activities.persistence.models import EnrollmentLogRow, EnrollmentRow, OrderRow, PeriodRow, UsageRecordRow
from activities.persistence.numbers import CROCKFORD_ALPHABET, candidate_number, candidate_numbers
from adapters.domain import (
    Address,
    BillingInterval,
    ConfigurationEntry,
    Contact,
    EnrollmentStatus,
    EnrollmentTerms,
    OrderConfiguration,
    OrderPosition,
    OrderStatus,
    PauseReason,
    PeriodWindow,
    Product,
    ProductPlan,
    ProductType,
    ProviderRef,
    StatusChange,
    UsageCalculationType,
)
from adapters.lifecycle import KEPT_PERIODS

T0 = datetime(2024, 1, 31, 9, 0, tzinfo=UTC)
NOW = datetime(2024, 1, 31, 9, 0, 5, tzinfo=UTC)
PRODUCT = Product(
    id="plan-monthly",
    title="Monthly plan",
    plan=ProductPlan(billing_interval=BillingInterval.MONTHS),
    price_amount=990,
    price_currency="CHF",
)
METERED_PRODUCT = PRODUCT.model_copy(
    update={
        "id": "plan-metered",
        "plan": ProductPlan(usage_calculation_type=UsageCalculationType.METERED, billing_interval=BillingInterval.DAYS),
    }
)
NUMBER_PATTERN = re.compile(rf"^[EO]-[{CROCKFORD_ALPHABET}]{{8}}$")


def terms(**changes: object) -> EnrollmentTerms:
    base = EnrollmentTerms(
        user_id="user-1",
        product_id=PRODUCT.id,
        quantity=2,
        configuration=[ConfigurationEntry(key="seat", value="A1")],
        timezone="Europe/Zurich",
        country_code="CH",
        currency_code="CHF",
        billing_address=Address(first_name="Ada", city="Zürich", country_code="CH"),
        contact=Contact(email_address="ada@example.com"),
        payment=ProviderRef(provider_id="invoice", context={"terms": 30, "nested": {"a": [1, 2.5, None]}}),
        delivery=ProviderRef(provider_id="email"),
        meta={"campaign": "spring", "score": 0.1},
        origin_order_id="checkout-1",
    )
    return base.model_copy(update=changes)


def window(start_hours: int, end_hours: int, *, trial: bool = False) -> PeriodWindow:
    return PeriodWindow(start=T0 + timedelta(hours=start_hours), end=T0 + timedelta(hours=end_hours), is_trial=trial)


def order_for(period: PeriodWindow, quantity: int = 2) -> OrderConfiguration:
    return OrderConfiguration(
        period=period,
        order_context={"reason": "period start"},
        order_position_templates=[
            OrderPosition(
                product_id=PRODUCT.id,
                original_product_id=PRODUCT.id,
                quantity=quantity,
                configuration=[ConfigurationEntry(key="seat", value="A1")],
            ),
            OrderPosition(product_id="addon", original_product_id=PRODUCT.id, quantity=1),
        ],
    )


async def enroll(store: Store, enrollment_id: str = "enr-1", **changes: object):
    await store.products.upsert(PRODUCT, now=NOW)
    return await store.enrollments.create(
        enrollment_id,
        terms(**changes),
        anchor=T0,
        adapter_key="shop.unchained.enrollments.licensed",
        now=NOW,
        status=EnrollmentStatus.ACTIVE,
    )


async def enroll_metered(store: Store) -> None:
    """``enr-1`` on a METERED plan with no period yet: usage from its anchor ``T0`` on is accepted."""
    await store.products.upsert(METERED_PRODUCT, now=NOW)
    await enroll(store, product_id=METERED_PRODUCT.id)


def second_store(database_url: str):
    """A store on its own engine, so two calls really use two connections."""
    engine = create_engine(database_url)
    return engine, Store.over(session_factory(engine))


# URLs, engines and numbers (no database needed)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///./data/x.db", "sqlite+aiosqlite:///./data/x.db"),
        ("sqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_normalize_database_url(url: str, expected: str) -> None:
    assert normalize_database_url(url) == expected


@pytest.mark.parametrize("url", ["mysql://u@h/db", "postgresql+psycopg2://u@h/db", "not a url"])
def test_normalize_database_url_rejects_other_schemes(url: str) -> None:
    with pytest.raises(ValueError, match=r"mysql|postgresql\+psycopg2|not a database URL"):
        normalize_database_url(url)


def test_unsupported_scheme_is_named() -> None:
    with pytest.raises(ValueError, match="'mysql'"):
        normalize_database_url("mysql://root:secret@db/shop")


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="in-memory SQLite"):
        create_engine("sqlite:///:memory:")


async def test_sqlite_engine_creates_directory_and_sets_pragmas(tmp_path) -> None:
    path = tmp_path / "nested" / "dir" / "enrollments.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        async with engine.connect() as connection:
            foreign_keys = (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar()
            journal = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar()
            busy = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    finally:
        await engine.dispose()
    assert path.parent.is_dir()
    assert (foreign_keys, journal, busy) == (1, "wal", 30_000)
    assert is_sqlite(f"sqlite:///{path}") and not is_sqlite("postgresql://h/db")


def test_numbers_are_stable_short_and_distinct() -> None:
    assert enrollment_number("enr-1") == enrollment_number("enr-1")
    assert NUMBER_PATTERN.match(enrollment_number("enr-1"))
    assert NUMBER_PATTERN.match(order_number("ord-1"))
    assert enrollment_number("enr-1").startswith("E-") and order_number("ord-1").startswith("O-")
    numbers = {enrollment_number(f"enr-{index}") for index in range(5_000)}
    assert len(numbers) == 5_000
    candidates = list(candidate_numbers("E-", "enr-1"))
    assert candidates[0] == enrollment_number("enr-1") and len(set(candidates)) == len(candidates)
    assert [len(candidate) - 2 for candidate in candidates[:4]] == [8, 8, 8, 8]
    assert len(candidates[-1]) > len(candidates[0])
    with pytest.raises(ValueError):
        candidate_number("E-", "enr-1", -1)


def test_normalize_number() -> None:
    number = enrollment_number("enr-1")
    assert normalize_number(f" {number.lower()} ") == number
    assert normalize_number("e-0123-4567") == "E-01234567"
    assert normalize_number("o-oi1l2345") == "O-01112345"
    for text in ("X-01234567", "E-0123", "E-0123456U", "E01234567"):
        with pytest.raises(ValueError, match="not an enrollment"):
            normalize_number(text)


def test_errors_name_their_subject_and_pickle() -> None:
    errors = [
        EnrollmentNotFound("enr-9"),
        ProductNotFound("p-9"),
        OrderNotFound("o-9"),
        EnrollmentConflict("enr-9", ["quantity", "meta"]),
        UsageConflict("enr-9", "key-9", 3, 4),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert "9" in str(error)
    assert "quantity, meta" in str(errors[3]) and "'key-9'" in str(errors[4])
    assert isinstance(errors[0], LookupError) and isinstance(errors[3], ValueError)


# Products


async def test_products_roundtrip(store: Store) -> None:
    assert await store.products.get(PRODUCT.id) is None
    assert await store.products.upsert(PRODUCT, now=NOW) == PRODUCT
    metered = Product(
        id="a-metered",
        plan=ProductPlan(usage_calculation_type=UsageCalculationType.METERED, billing_interval=BillingInterval.DAYS),
    )
    simple = Product(id="z-simple", type=ProductType.SIMPLE_PRODUCT)
    await store.products.upsert(metered, now=NOW)
    await store.products.upsert(simple, now=NOW)
    changed = PRODUCT.model_copy(update={"title": "Renamed", "price_amount": None})
    assert await store.products.upsert(changed, now=NOW + timedelta(days=1)) == changed
    assert await store.products.get(PRODUCT.id) == changed
    assert await store.products.all() == [metered, changed, simple]


async def test_delete_product(store: Store) -> None:
    await enroll(store)
    spare = Product(id="spare", plan=ProductPlan(billing_interval=BillingInterval.YEARS))
    await store.products.upsert(spare, now=NOW)
    await store.products.delete("spare")
    assert await store.products.get("spare") is None
    with pytest.raises(ValueError, match="'plan-monthly' cannot be deleted: enrollment 'enr-1'"):
        await store.products.delete(PRODUCT.id)
    with pytest.raises(ProductNotFound, match="'spare'"):
        await store.products.delete("spare")


# Enrollments


async def test_create_enrollment_snapshot(store: Store) -> None:
    zurich = timezone(timedelta(hours=1))
    await store.products.upsert(PRODUCT, now=NOW)
    created = await store.enrollments.create(
        "enr-1",
        terms(),
        anchor=T0.astimezone(zurich),
        adapter_key="shop.unchained.enrollments.licensed",
        now=NOW.astimezone(zurich),
    )
    assert created == await store.enrollments.get("enr-1")
    assert created.model_dump(include=set(EnrollmentTerms.model_fields)) == terms().model_dump()
    assert created.number == enrollment_number("enr-1")
    assert created.status is EnrollmentStatus.INITIAL and created.pause_reason is None
    assert (created.anchor, created.created, created.updated, created.expires) == (T0, NOW, NOW, None)
    assert created.periods == []
    assert [(entry.status, entry.at) for entry in created.log] == [(EnrollmentStatus.INITIAL, NOW)]
    assert created.number is not None and created.number in created.log[0].info
    assert await store.enrollments.exists("enr-1") and not await store.enrollments.exists("enr-2")
    assert await store.enrollments.get("enr-2") is None
    assert await store.enrollments.get_by_number(created.number) == created


async def test_create_enrollment_is_idempotent(store: Store) -> None:
    first = await enroll(store)
    again = await store.enrollments.create(
        "enr-1", terms(), anchor=T0 + timedelta(days=1), adapter_key="other", now=NOW + timedelta(hours=1)
    )
    assert again == first
    assert again.number == first.number and len(again.log) == 1 and again.status is EnrollmentStatus.ACTIVE


async def test_create_enrollment_conflict_names_fields(store: Store) -> None:
    await enroll(store)
    with pytest.raises(EnrollmentConflict, match=r"'enr-1'.*quantity, meta"):
        await store.enrollments.create(
            "enr-1", terms(quantity=3, meta={"other": True}), anchor=T0, adapter_key="k", now=NOW
        )


async def test_create_enrollment_checks_product(store: Store) -> None:
    with pytest.raises(ProductNotFound, match="'plan-monthly'"):
        await store.enrollments.create("enr-1", terms(), anchor=T0, adapter_key="k", now=NOW)
    await store.products.upsert(Product(id="simple", type=ProductType.SIMPLE_PRODUCT), now=NOW)
    with pytest.raises(ValueError, match="'simple' is not a PLAN_PRODUCT"):
        await store.enrollments.create("enr-1", terms(product_id="simple"), anchor=T0, adapter_key="k", now=NOW)
    assert not await store.enrollments.exists("enr-1")


async def test_create_enrollment_rejects_bad_input(store: Store) -> None:
    await store.products.upsert(PRODUCT, now=NOW)
    with pytest.raises(ValueError, match="INITIAL or ACTIVE"):
        await store.enrollments.create(
            "enr-1", terms(), anchor=T0, adapter_key="k", now=NOW, status=EnrollmentStatus.PAUSED
        )
    with pytest.raises(ValueError, match="anchor must be timezone-aware"):
        await store.enrollments.create("enr-1", terms(), anchor=T0.replace(tzinfo=None), adapter_key="k", now=NOW)
    with pytest.raises(ValueError, match="enrollment_id"):
        await store.enrollments.create("x" * 129, terms(), anchor=T0, adapter_key="k", now=NOW)


async def test_concurrent_create_makes_one_enrollment(store: Store, database_url: str) -> None:
    await store.products.upsert(PRODUCT, now=NOW)
    engine, other = second_store(database_url)
    try:
        results = await asyncio.gather(
            *(
                target.enrollments.create(f"enr-{index}", terms(), anchor=T0, adapter_key="k", now=NOW)
                for index in range(5)
                for target in (store, other)
            )
        )
    finally:
        await engine.dispose()
    for index in range(5):
        first, second = results[2 * index], results[2 * index + 1]
        assert first == second and first.number == enrollment_number(f"enr-{index}")
    assert len(await store.enrollments.matching(limit=100)) == 5


async def test_number_collision_takes_next_candidate(store: Store, sessions: async_sessionmaker[AsyncSession]) -> None:
    await enroll(store, "enr-a")
    async with sessions() as session, session.begin():
        # Make enr-a hold the number enr-b would get first.
        await session.execute(
            update(EnrollmentRow).where(EnrollmentRow.id == "enr-a").values(number=enrollment_number("enr-b"))
        )
    created = await enroll(store, "enr-b")
    assert created.number == enrollment_number("enr-b", 1)
    assert (await enroll(store, "enr-b")).number == created.number


# Periods and orders


async def test_add_period_with_order_is_idempotent(store: Store) -> None:
    await enroll(store)
    period = window(0, 24)
    stored, order = await store.billing.add_period("enr-1", period, order_for(period), now=NOW)
    assert order is not None
    assert (stored.start, stored.end, stored.is_trial) == (period.start, period.end, False)
    assert (stored.order_id, stored.order_status) == (order.id, OrderStatus.PENDING)
    assert NUMBER_PATTERN.match(order.number) and order.number == order_number(order.id)
    assert (order.enrollment_id, order.period_start, order.period_end) == ("enr-1", period.start, period.end)
    assert order.positions == order_for(period).order_position_templates
    assert order.context == {"reason": "period start"} and order.created == NOW

    later = NOW + timedelta(minutes=5)
    assert await store.billing.add_period("enr-1", period, order_for(period), now=later) == (stored, order)
    assert await store.billing.list_orders("enr-1") == [order]
    assert await store.billing.get_order(order.id) == order
    snapshot = await store.enrollments.get("enr-1")
    assert snapshot is not None and snapshot.periods == [stored] and snapshot.updated == NOW


async def test_trial_period_without_order(store: Store) -> None:
    await enroll(store)
    trial = window(0, 24, trial=True)
    stored, order = await store.billing.add_period("enr-1", trial, None, now=NOW)
    assert order is None and stored.is_trial and stored.order_id is None and stored.order_status is None
    assert await store.billing.add_period("enr-1", trial, None, now=NOW) == (stored, None)
    assert await store.billing.list_orders("enr-1") == []


async def test_concurrent_add_period_makes_one_period_and_one_order(store: Store, database_url: str) -> None:
    await enroll(store)
    engine, other = second_store(database_url)
    try:
        for index in range(5):
            period = window(24 * index, 24 * (index + 1))
            first, second = await asyncio.gather(
                store.billing.add_period("enr-1", period, order_for(period), now=NOW),
                other.billing.add_period("enr-1", period, order_for(period), now=NOW),
            )
            assert first == second and first[1] is not None
    finally:
        await engine.dispose()
    snapshot = await store.enrollments.get("enr-1")
    assert snapshot is not None and len(snapshot.periods) == 5
    orders = await store.billing.list_orders("enr-1")
    assert len(orders) == 5 and [period.order_id for period in snapshot.periods] == [order.id for order in orders]


async def test_add_period_losing_a_race_rolls_back_and_returns_the_winner(
    store: Store, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await enroll(store)
    period = window(0, 24)
    async with sessions() as session, session.begin():
        # Another writer has inserted the period but not committed yet.
        await session.execute(
            insert(PeriodRow).values(enrollment_id="enr-1", start=period.start, end=period.end, is_trial=False)
        )
        racing = asyncio.create_task(store.billing.add_period("enr-1", period, order_for(period), now=NOW))
        await asyncio.sleep(0.3)
        assert not racing.done()
    stored, order = await racing
    # The loser's order went with its rolled-back transaction: the winner's period has none.
    assert (stored.start, stored.order_id, order) == (period.start, None, None)
    assert await store.billing.list_orders("enr-1") == []


async def test_overlapping_period_is_refused(store: Store) -> None:
    await enroll(store)
    await store.billing.add_period("enr-1", window(0, 10), None, now=NOW)
    first = r"\[2024-01-31T09:00:00\+00:00, 2024-01-31T19:00:00\+00:00\)"
    with pytest.raises(ValueError, match=rf"period \[2024-01-31T14:00:00\+00:00, .*\) overlaps period {first}"):
        await store.billing.add_period("enr-1", window(5, 15), None, now=NOW)
    with pytest.raises(ValueError, match=rf"conflicts with the stored period {first}"):
        await store.billing.add_period("enr-1", window(0, 12), None, now=NOW)
    with pytest.raises(ValueError, match="overlaps"):
        await store.billing.add_period("enr-1", window(-5, 1), None, now=NOW)
    await store.billing.add_period("enr-1", window(10, 20), None, now=NOW)
    await store.billing.add_period("enr-1", window(-10, 0), None, now=NOW)
    snapshot = await store.enrollments.get("enr-1")
    assert snapshot is not None
    assert [period.start for period in snapshot.periods] == [window(h, h + 1).start for h in (-10, 0, 10)]


async def test_add_period_checks_enrollment_and_order_window(store: Store) -> None:
    with pytest.raises(EnrollmentNotFound, match="'enr-1'"):
        await store.billing.add_period("enr-1", window(0, 10), None, now=NOW)
    await enroll(store)
    with pytest.raises(ValueError, match="does not bill period"):
        await store.billing.add_period("enr-1", window(0, 10), order_for(window(0, 11)), now=NOW)
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        await store.billing.add_period("enr-1", window(0, 10), None, now=NOW.replace(tzinfo=None))
    await store.billing.add_period("enr-1", window(0, 10), None, now=NOW)
    await store.enrollments.change_status(
        "enr-1", StatusChange(status=EnrollmentStatus.TERMINATED, event_key="t", at=NOW, info="bye")
    )
    with pytest.raises(ValueError, match="TERMINATED: it gets no new periods"):
        await store.billing.add_period("enr-1", window(10, 20), None, now=NOW)
    # A retry of the period made before termination still answers.
    assert (await store.billing.add_period("enr-1", window(0, 10), None, now=NOW))[0].start == T0


async def test_order_status(store: Store) -> None:
    await enroll(store)
    period = window(0, 24)
    _, order = await store.billing.add_period("enr-1", period, order_for(period), now=NOW)
    assert order is not None
    paid = await store.billing.set_order_status(order.id, OrderStatus.CONFIRMED, now=NOW + timedelta(hours=1))
    assert paid.status is OrderStatus.CONFIRMED and paid.model_copy(update={"status": order.status}) == order
    assert await store.billing.get_order(order.id) == paid
    snapshot = await store.enrollments.get("enr-1")
    assert snapshot is not None and snapshot.periods[0].order_status is OrderStatus.CONFIRMED
    with pytest.raises(OrderNotFound, match="'nope'"):
        await store.billing.set_order_status("nope", OrderStatus.CONFIRMED, now=NOW)
    assert await store.billing.get_order("nope") is None


# Status and log


async def test_change_status_is_idempotent_on_event_key(store: Store) -> None:
    await enroll(store)
    at = NOW + timedelta(days=1)
    paused = await store.enrollments.change_status(
        "enr-1",
        StatusChange(
            status=EnrollmentStatus.PAUSED, event_key="pause-1", at=at, info="customer", pause_reason=PauseReason.MANUAL
        ),
    )
    assert (paused.status, paused.pause_reason, paused.updated) == (EnrollmentStatus.PAUSED, PauseReason.MANUAL, at)
    again = await store.enrollments.change_status(
        "enr-1",
        StatusChange(status=EnrollmentStatus.ACTIVE, event_key="pause-1", at=at + timedelta(hours=1), info="retry"),
    )
    assert again == paused and len(again.log) == 2

    resume_at = at + timedelta(days=3)
    resumed = await store.enrollments.change_status(
        "enr-1",
        StatusChange(status=EnrollmentStatus.ACTIVE, event_key="resume-1", at=resume_at, info="back", anchor=resume_at),
    )
    assert (resumed.status, resumed.pause_reason, resumed.anchor) == (EnrollmentStatus.ACTIVE, None, resume_at)
    assert resumed.expires is None
    unpaid = StatusChange(
        status=EnrollmentStatus.PAUSED,
        event_key="overdue-1",
        at=resume_at,
        info="unpaid",
        pause_reason=PauseReason.OVERDUE,
    )
    overdue = await store.enrollments.change_status("enr-1", unpaid)
    assert overdue.pause_reason is PauseReason.OVERDUE and overdue.anchor == resume_at
    assert [entry.status for entry in overdue.log] == [
        EnrollmentStatus.ACTIVE,
        EnrollmentStatus.PAUSED,
        EnrollmentStatus.ACTIVE,
        EnrollmentStatus.PAUSED,
    ]
    with pytest.raises(ValueError, match="needs a pause_reason"):
        await store.enrollments.change_status(
            "enr-1", StatusChange(status=EnrollmentStatus.PAUSED, event_key="p2", at=at, info="")
        )
    with pytest.raises(EnrollmentNotFound):
        await store.enrollments.change_status(
            "enr-x", StatusChange(status=EnrollmentStatus.ACTIVE, event_key="a", at=at, info="")
        )


async def test_terminated_is_final(store: Store) -> None:
    await enroll(store)
    end = T0 + timedelta(days=29)
    terminated = await store.enrollments.change_status(
        "enr-1",
        StatusChange(status=EnrollmentStatus.TERMINATED, event_key="terminate", at=NOW, info="cancelled", expires=end),
    )
    assert (terminated.status, terminated.expires) == (EnrollmentStatus.TERMINATED, end)
    for status in (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED, EnrollmentStatus.INITIAL):
        with pytest.raises(ValueError, match=rf"'enr-1' is TERMINATED, which is final: it cannot become {status}"):
            await store.enrollments.change_status(
                "enr-1",
                StatusChange(status=status, event_key=f"to-{status}", at=NOW, info="", pause_reason=PauseReason.MANUAL),
            )
    # The retried termination is a no-op; a later correction of the expiry is allowed.
    assert (
        await store.enrollments.change_status(
            "enr-1",
            StatusChange(
                status=EnrollmentStatus.TERMINATED, event_key="terminate", at=NOW, info="cancelled", expires=end
            ),
        )
        == terminated
    )
    fixed = await store.enrollments.change_status(
        "enr-1",
        StatusChange(status=EnrollmentStatus.TERMINATED, event_key="terminate-now", at=NOW, info="now", expires=NOW),
    )
    assert fixed.expires == NOW and fixed.status is EnrollmentStatus.TERMINATED


async def test_log_order_and_idempotency(store: Store) -> None:
    await enroll(store)

    def change(status: EnrollmentStatus, key: str, at: datetime, info: str) -> StatusChange:
        reason = PauseReason.MANUAL if status is EnrollmentStatus.PAUSED else None
        return StatusChange(status=status, event_key=key, at=at, info=info, pause_reason=reason)

    # Entries are kept in the order they were written, whatever their timestamps.
    await store.enrollments.change_status(
        "enr-1", change(EnrollmentStatus.PAUSED, "b", NOW + timedelta(hours=2), "second")
    )
    await store.enrollments.change_status(
        "enr-1", change(EnrollmentStatus.ACTIVE, "a", NOW + timedelta(hours=1), "third")
    )
    again = await store.enrollments.change_status("enr-1", change(EnrollmentStatus.PAUSED, "b", NOW, "duplicate"))
    assert again.status is EnrollmentStatus.ACTIVE, "a repeated event key changes nothing"
    await store.enrollments.change_status("enr-1", change(EnrollmentStatus.PAUSED, "c", NOW, "fourth"))
    snapshot = await store.enrollments.get("enr-1")
    assert snapshot is not None
    assert [entry.info for entry in snapshot.log][1:] == ["second", "third", "fourth"]
    assert snapshot.log[0].info.startswith("created")
    assert [entry.status for entry in snapshot.log] == [
        EnrollmentStatus.ACTIVE,
        EnrollmentStatus.PAUSED,
        EnrollmentStatus.ACTIVE,
        EnrollmentStatus.PAUSED,
    ]
    with pytest.raises(EnrollmentNotFound):
        await store.enrollments.change_status("enr-x", change(EnrollmentStatus.ACTIVE, "x", NOW, ""))
    with pytest.raises(ValidationError, match="event_key"):
        change(EnrollmentStatus.ACTIVE, "", NOW, "")
    assert CREATED_EVENT == "created"


# Usage


async def test_usage_is_idempotent_and_summed_over_half_open_windows(store: Store, database_url: str) -> None:
    await enroll_metered(store)
    assert await store.usage.record("enr-1", 5, "u-0", T0, now=NOW) is True
    assert await store.usage.record("enr-1", 5, "u-0", T0 + timedelta(hours=3), now=NOW) is False
    with pytest.raises(UsageConflict, match="'u-0' of enrollment 'enr-1' was recorded with 5 units, not 6"):
        await store.usage.record("enr-1", 6, "u-0", T0, now=NOW)
    assert await store.usage.record("enr-1", 7, "u-1", T0 + timedelta(hours=1), now=NOW)
    assert await store.usage.record("enr-1", 0, "u-2", T0 + timedelta(hours=2), now=NOW)
    assert await store.usage.record("enr-1", 11, "u-3", T0 + timedelta(hours=2), now=NOW)

    engine, other = second_store(database_url)
    try:
        results = await asyncio.gather(
            store.usage.record("enr-1", 100, "u-4", T0 + timedelta(hours=5), now=NOW),
            other.usage.record("enr-1", 100, "u-4", T0 + timedelta(hours=5), now=NOW),
        )
    finally:
        await engine.dispose()
    assert sorted(results) == [False, True]

    async def units(start: int, end: int) -> int:
        return await store.usage.units("enr-1", T0 + timedelta(hours=start), T0 + timedelta(hours=end))

    assert await units(0, 2) == 12  # 09:00 and 10:00; 11:00 is the (excluded) end
    assert await units(2, 3) == 11
    assert await units(0, 6) == 123
    assert await units(1, 1) == 0 and await units(6, 100) == 0
    assert await store.usage.units("enr-x", T0, T0 + timedelta(days=1)) == 0
    # Another zone, the same instants.
    plus_two = timezone(timedelta(hours=2))
    assert (
        await store.usage.units("enr-1", T0.astimezone(plus_two), (T0 + timedelta(hours=2)).astimezone(plus_two)) == 12
    )


async def test_usage_rejects_bad_input(store: Store) -> None:
    with pytest.raises(EnrollmentNotFound):
        await store.usage.record("enr-1", 1, "k", T0, now=NOW)
    await enroll_metered(store)
    with pytest.raises(ValueError, match=r"from 0 to 9223372036854775807 \(2\^63 - 1\)"):
        await store.usage.record("enr-1", -1, "k", T0, now=NOW)
    with pytest.raises(ValueError, match="idempotency_key"):
        await store.usage.record("enr-1", 1, "", T0, now=NOW)
    with pytest.raises(ValueError, match="at must be timezone-aware"):
        await store.usage.record("enr-1", 1, "k", T0.replace(tzinfo=None), now=NOW)


# Listing and paging


async def test_page_through_120_enrollments(store: Store) -> None:
    await store.products.upsert(PRODUCT, now=NOW)
    expected: list[str] = []
    for index in range(160):
        enrollment_id = f"enr-{index:04d}"
        slot = index % 8
        initial = slot == 0
        await store.enrollments.create(
            enrollment_id,
            terms(),
            anchor=T0,
            adapter_key="k",
            now=NOW,
            status=EnrollmentStatus.INITIAL if initial else EnrollmentStatus.ACTIVE,
        )
        if slot in (1, 5):
            await store.enrollments.change_status(
                enrollment_id,
                StatusChange(
                    status=EnrollmentStatus.PAUSED, event_key="s", at=NOW, info="", pause_reason=PauseReason.OVERDUE
                ),
            )
        elif slot == 4:
            await store.enrollments.change_status(
                enrollment_id, StatusChange(status=EnrollmentStatus.TERMINATED, event_key="s", at=NOW, info="")
            )
        if not initial and slot != 4:
            expected.append(enrollment_id)
    assert len(expected) == 120

    pages: list[list[str]] = []
    after: str | None = None
    while True:
        page = await store.enrollments.page(
            [EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED], after_id=after, limit=50
        )
        if not page:
            break
        pages.append([enrollment.id for enrollment in page])
        after = page[-1].id
    assert [len(page) for page in pages] == [50, 50, 20]
    assert [enrollment_id for page in pages for enrollment_id in page] == expected
    paused = await store.enrollments.page([EnrollmentStatus.PAUSED], after_id=None, limit=500)
    assert len(paused) == 40 and all(enrollment.pause_reason is PauseReason.OVERDUE for enrollment in paused)
    assert await store.enrollments.page([], after_id=None, limit=10) == []
    with pytest.raises(ValueError, match="limit"):
        await store.enrollments.page([EnrollmentStatus.ACTIVE], after_id=None, limit=0)


async def test_page_snapshots_carry_periods(store: Store) -> None:
    await enroll(store, "enr-1")
    await enroll(store, "enr-2")
    period = window(0, 24)
    _, order = await store.billing.add_period("enr-2", period, order_for(period), now=NOW)
    first, second = await store.enrollments.page([EnrollmentStatus.ACTIVE], after_id=None, limit=10)
    full = await store.enrollments.get("enr-2")
    assert full is not None and order is not None
    assert first.periods == [] and second.periods == full.periods and second.periods[0].order_id == order.id
    assert second.log == [] and second.model_copy(update={"log": full.log}) == full


async def test_list_enrollments_filters(store: Store) -> None:
    await enroll(store, "enr-1")
    await enroll(store, "enr-2", user_id="user-2")
    other = Product(id="plan-yearly", plan=ProductPlan(billing_interval=BillingInterval.YEARS))
    await store.products.upsert(other, now=NOW)
    await store.enrollments.create("enr-3", terms(product_id=other.id), anchor=T0, adapter_key="k", now=NOW)

    async def ids(**filters: object) -> list[str]:
        return [enrollment.id for enrollment in await store.enrollments.matching(**filters)]  # type: ignore[arg-type]

    assert await ids() == ["enr-1", "enr-2", "enr-3"]
    assert await ids(status=EnrollmentStatus.INITIAL) == ["enr-3"]
    assert await ids(product_id=PRODUCT.id) == ["enr-1", "enr-2"]
    assert await ids(user_id="user-2") == ["enr-2"]
    assert await ids(user_id="user-1", status=EnrollmentStatus.ACTIVE) == ["enr-1"]
    assert await ids(offset=1, limit=1) == ["enr-2"]
    assert await ids(offset=5) == []
    with pytest.raises(ValueError, match="offset"):
        await store.enrollments.matching(offset=-1)


# The constraints themselves, below the store


async def test_unique_constraints_reject_raw_duplicates(
    store: Store, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await enroll_metered(store)
    period = window(0, 24)
    _, order = await store.billing.add_period("enr-1", period, order_for(period), now=NOW)
    assert order is not None
    duplicates = [
        insert(PeriodRow).values(enrollment_id="enr-1", start=period.start, end=period.end + timedelta(hours=1),
                                 is_trial=False),
        insert(OrderRow).values(id="other-order", number="O-DUPLICATE", enrollment_id="enr-1",
                                period_start=period.start, period_end=period.end, status="PENDING", context={},
                                created=NOW, updated=NOW),
        insert(OrderRow).values(id="other-order", number=order.number, enrollment_id="enr-1",
                                period_start=period.end, period_end=period.end + timedelta(days=1),
                                status="PENDING", context={}, created=NOW, updated=NOW),
        insert(EnrollmentLogRow).values(enrollment_id="enr-1", event_key=CREATED_EVENT, at=NOW, status="ACTIVE",
                                        info=""),
        insert(PeriodRow).values(enrollment_id="enr-missing", start=period.end, end=period.end + timedelta(days=1),
                                 is_trial=False),
    ]  # fmt: skip
    for statement in duplicates:
        async with sessions() as session:
            with pytest.raises(IntegrityError):
                async with session.begin():
                    await session.execute(statement)
    await store.usage.record("enr-1", 1, "u", T0, now=NOW)
    async with sessions() as session:
        with pytest.raises(IntegrityError):
            async with session.begin():
                await session.execute(
                    insert(UsageRecordRow).values(
                        enrollment_id="enr-1", idempotency_key="u", units=2, at=T0, created=NOW
                    )
                )


async def test_datetimes_read_back_aware_in_utc(store: Store, sessions: async_sessionmaker[AsyncSession]) -> None:
    plus_five = timezone(timedelta(hours=5))
    await store.products.upsert(PRODUCT, now=NOW)
    await store.enrollments.create("enr-1", terms(), anchor=T0.astimezone(plus_five), adapter_key="k", now=NOW)
    async with sessions() as session:
        row = await session.get(EnrollmentRow, "enr-1")
    assert row is not None
    for value in (row.anchor, row.created, row.updated):
        assert value.tzinfo is UTC
    assert (row.anchor, row.created) == (T0, NOW)


async def test_naive_datetimes_are_not_stored(store: Store, sessions: async_sessionmaker[AsyncSession]) -> None:
    await enroll(store)
    async with sessions() as session:
        with pytest.raises(StatementError, match="naive datetime"):
            async with session.begin():
                await session.execute(
                    insert(UsageRecordRow).values(
                        enrollment_id="enr-1", idempotency_key="n", units=1, at=datetime(2024, 1, 1), created=NOW
                    )
                )


async def test_the_recent_snapshot_holds_what_a_period_decides_on(store: Store) -> None:
    await enroll(store)
    await store.billing.add_period("enr-1", window(0, 1, trial=True), None, now=NOW)  # a trial: no order
    for hour in range(1, 60):
        # Every tenth period without an order (as a billing system that skipped it would leave it).
        order = None if hour % 10 == 0 else order_for(window(hour, hour + 1))
        await store.billing.add_period("enr-1", window(hour, hour + 1), order, now=NOW)
    full = await store.enrollments.get("enr-1")
    recent = await store.enrollments.get_recent("enr-1")
    assert full is not None and recent is not None and len(full.periods) == 60
    latest = full.periods[-KEPT_PERIODS:]
    first = full.periods[0]
    still_open = [period for period in full.periods if period.order_id is None and period.billed_at is None]
    expected = {period.start: period for period in [first, *still_open, *latest]}
    assert recent.periods == [expected[start] for start in sorted(expected)]
    assert recent.periods[0].is_trial, "the schedule's first period says it began with a trial"
    assert recent.log == [] and recent.model_dump(exclude={"periods", "log"}) == full.model_dump(
        exclude={"periods", "log"}
    )


async def test_a_unit_of_work_is_one_transaction_all_or_nothing(store: Store) -> None:
    await enroll(store)
    first, second = window(0, 24), window(24, 48)
    wake_up = T0 + timedelta(hours=48)

    async def two_periods_then_a_failure() -> None:
        await store.billing.add_period("enr-1", first, order_for(first), now=NOW)
        await store.enrollments.set_next_wake_up("enr-1", wake_up)
        seen = await store.enrollments.get_recent("enr-1")  # a read inside the unit sees the unit's writes
        assert seen is not None and [period.start for period in seen.periods] == [first.start]
        await store.billing.add_period("enr-1", second, order_for(first), now=NOW)  # the wrong window: refused

    with pytest.raises(ValueError, match="does not bill period"):
        await store.transactions.unit(two_periods_then_a_failure)
    rolled_back = await store.enrollments.get("enr-1")
    assert rolled_back is not None and rolled_back.periods == [] and rolled_back.next_wake_up == T0  # as created
    assert await store.billing.list_orders("enr-1") == []

    async def two_periods() -> None:
        await store.billing.add_period("enr-1", first, order_for(first), now=NOW)
        await store.billing.add_period("enr-1", second, order_for(second), now=NOW + timedelta(seconds=1))
        await store.enrollments.set_next_wake_up("enr-1", wake_up)

    await store.transactions.unit(two_periods)
    committed = await store.enrollments.get("enr-1")
    assert committed is not None and [period.start for period in committed.periods] == [first.start, second.start]
    assert committed.next_wake_up == wake_up and committed.updated == NOW + timedelta(seconds=1)
    assert len(await store.billing.list_orders("enr-1")) == 2


async def test_add_period_refuses_overlaps_found_from_the_latest_period_before_it(store: Store) -> None:
    await enroll(store)
    for index in range(3):
        await store.billing.add_period("enr-1", window(24 * index, 24 * (index + 1)), None, now=NOW)
    with pytest.raises(ValueError, match="overlaps period"):
        await store.billing.add_period("enr-1", window(60, 80), None, now=NOW)  # inside the third
    with pytest.raises(ValueError, match="overlaps period"):
        await store.billing.add_period("enr-1", window(-12, 12), None, now=NOW)  # across the first's start
    with pytest.raises(ValueError, match="conflicts with the stored period"):
        await store.billing.add_period("enr-1", window(24, 36), None, now=NOW)  # the second's start, another end
    stored, _ = await store.billing.add_period("enr-1", window(72, 96), None, now=NOW)  # right after: fine
    assert stored.start == window(72, 96).start
