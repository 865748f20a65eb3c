"""The bad-input catalogue (docs/bad-input.md): every public entry point refuses invalid values clearly.

Each case checks the error names the problem and that nothing was left behind: no enrollment, period,
order or log row, and — for input refused by the client — no workflow started. Cases that reach the
workflow run against one time-skipping server and one SQLite database for the module; the pure ones use a
client that is never connected (``lazy``) to an address where nothing listens, which proves the input was
refused before any call to Temporal.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, text
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from activities.faults import parse_fault_spec
from activities.persistence import Store, create_engine, session_factory
from activities.persistence.errors import UsageConflict
from activities.persistence.migrate import upgrade_async
from activities.persistence.models import EnrollmentLogRow, EnrollmentRow, OrderRow, PeriodRow, UsageRecordRow
from adapters.builtin import director_from_names
from adapters.domain import (
    MAX_CONFIGURATION_ENTRIES,
    BillingInterval,
    OrderStatus,
    Product,
    ProductPlan,
    ProductType,
    UsageCalculationType,
)
from adapters.lifecycle import ErrorType, MessageName, workflow_id_for
from starter.cli import app
from starter.client import EnrollmentCommandRejected, EnrollmentNotFound, EnrollmentsClient, OrderNotFound
from starter.client.payload_limits import MAX_TERMS_BYTES, PayloadTooLarge
from starter.connection.codec import CodecKeyError, parse_keys
from starter.devtools import binaries as temporal_binaries
from starter.devtools.binaries import register_search_attributes
from starter.devtools.scenario import ScenarioError, load_scenario
from starter.runtime.worker import build_worker

SCENARIOS = Path(__file__).parent / "scenarios"
MONTHLY = ProductPlan(billing_interval=BillingInterval.MONTHS)
METERED = ProductPlan(usage_calculation_type=UsageCalculationType.METERED, billing_interval=BillingInterval.MONTHS)


# --- fixtures ------------------------------------------------------------------------------------------


class Stack:
    """One time-skipping server, one SQLite database and one worker for the module's cases."""

    def __init__(self, env: WorkflowEnvironment, client: EnrollmentsClient, database_url: str) -> None:
        self.env = env
        self.client = client
        self.database_url = database_url

    async def rows(self, enrollment_id: str) -> dict[str, int]:
        """How many rows of each kind the database holds for ``enrollment_id``."""
        engine = create_engine(self.database_url)
        try:
            async with engine.connect() as connection:
                counts = {}
                for name, table, column in (
                    ("enrollments", EnrollmentRow, EnrollmentRow.id),
                    ("periods", PeriodRow, PeriodRow.enrollment_id),
                    ("orders", OrderRow, OrderRow.enrollment_id),
                    ("log", EnrollmentLogRow, EnrollmentLogRow.enrollment_id),
                    ("usage", UsageRecordRow, UsageRecordRow.enrollment_id),
                ):
                    query = select(func.count()).select_from(table).where(column == enrollment_id)
                    counts[name] = (await connection.execute(query)).scalar_one()
                return counts
        finally:
            await engine.dispose()

    async def assert_nothing_stored(self, enrollment_id: str) -> None:
        assert await self.rows(enrollment_id) == {"enrollments": 0, "periods": 0, "orders": 0, "log": 0, "usage": 0}

    async def latest_run(self, enrollment_id: str) -> str:
        """The run id of the workflow's latest run (the raw call: no search attribute decoding)."""
        client = self.env.client
        execution = WorkflowExecution(workflow_id=workflow_id_for(enrollment_id))
        request = DescribeWorkflowExecutionRequest(namespace=client.namespace, execution=execution)
        response = await client.workflow_service.describe_workflow_execution(request)
        return response.workflow_execution_info.execution.run_id

    async def workflow_exists(self, enrollment_id: str) -> bool:
        try:
            await self.env.client.get_workflow_handle(workflow_id_for(enrollment_id)).describe()
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    database_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('bad-input') / 'enrollments.db'}"
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    store = Store.over(session_factory(engine))
    now = datetime.now(UTC)
    await store.products.upsert(Product(id="monthly", plan=MONTHLY), now=now)
    await store.products.upsert(Product(id="metered", plan=METERED), now=now)
    await store.products.upsert(Product(id="t-shirt", type=ProductType.SIMPLE_PRODUCT), now=now)
    async with engine.begin() as connection:  # a row another tool wrote: a plan that cannot make a period
        await connection.execute(
            text("INSERT INTO products (id, type, plan, created, updated) VALUES (:id, :type, :plan, :now, :now)"),
            {"id": "broken", "type": "PLAN_PRODUCT", "plan": '{"billing_interval_count": 0}', "now": now.isoformat()},
        )
    await engine.dispose()
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_binaries.test_server_path(), data_converter=pydantic_data_converter
    )
    await register_search_attributes(env.client, "default")
    queue = f"bad-input-{uuid.uuid4().hex[:8]}"
    resources = build_worker(
        env.client, database_url=database_url, task_queue=queue, director=director_from_names(["licensed", "metered"])
    )
    client = EnrollmentsClient(env.client, task_queue=queue, database_url=database_url)
    try:
        async with resources.worker:
            yield Stack(env, client, database_url)
    finally:
        await client.close()
        await resources.close()
        await env.shutdown()


@pytest.fixture(scope="module")
async def offline_client() -> EnrollmentsClient:
    """A client whose Temporal address has no server: any call that reached Temporal would fail to connect."""
    client = await Client.connect("127.0.0.1:1", lazy=True, data_converter=pydantic_data_converter)
    return EnrollmentsClient(client, task_queue="nowhere")


def _new_id() -> str:
    return f"bad-{uuid.uuid4().hex[:10]}"


# --- client library: create_enrollment, refused before Temporal ----------------------------------------

CREATE_REFUSED_LOCALLY: dict[str, tuple[dict[str, Any], str]] = {
    "quantity zero": ({"quantity": 0}, "quantity"),
    "quantity negative": ({"quantity": -3}, "quantity"),
    "quantity huge": ({"quantity": 10**12}, "quantity"),
    "unknown timezone": ({"timezone": "Mars/Olympus_Mons"}, "unknown IANA time zone 'Mars/Olympus_Mons'"),
    "path as timezone": ({"timezone": "../../etc/passwd"}, "unknown IANA time zone"),
    "blank user": ({"user_id": ""}, "user_id"),
    "blank product": ({"product_id": ""}, "product_id"),
    "too many configuration entries": (
        {"configuration": [{"key": f"k{i}", "value": "v"} for i in range(MAX_CONFIGURATION_ENTRIES + 1)]},
        "configuration",
    ),
    "configuration value too long": ({"configuration": [{"key": "k", "value": "x" * 5_000}]}, "configuration"),
    "configuration entry without key": ({"configuration": [{"key": "", "value": "v"}]}, "configuration"),
    "country code of three letters": ({"country_code": "CHE"}, "country_code"),
    "unknown term": ({"coupon": "FREE"}, "coupon"),
}


@pytest.mark.parametrize("case", sorted(CREATE_REFUSED_LOCALLY))
async def test_create_refuses_invalid_terms_before_temporal(offline_client: EnrollmentsClient, case: str) -> None:
    overrides, named = CREATE_REFUSED_LOCALLY[case]
    arguments: dict[str, Any] = {"product_id": "monthly", "user_id": "u"} | overrides
    with pytest.raises(ValidationError) as raised:
        await offline_client.create_enrollment(**arguments)
    assert named in str(raised.value)


async def test_create_refuses_a_naive_start(offline_client: EnrollmentsClient) -> None:
    with pytest.raises(ValueError, match="start must be timezone-aware"):
        await offline_client.create_enrollment(product_id="monthly", user_id="u", start=datetime(2031, 1, 1))


async def test_create_refuses_oversized_terms_before_temporal(offline_client: EnrollmentsClient) -> None:
    blob = {"notes": "x" * (8 * 1024 * 1024)}  # 8 MiB: over the server's 2 MB payload limit
    with pytest.raises(PayloadTooLarge, match=r"largest fields: meta \(8\.0 MiB\)") as raised:
        await offline_client.create_enrollment(product_id="monthly", user_id="u", meta=blob)
    assert raised.value.limit == MAX_TERMS_BYTES
    # A configuration at the model's caps is refused too: it would be copied into every order of the state.
    biggest = [{"key": f"k{i}", "value": "x" * 4_096} for i in range(MAX_CONFIGURATION_ENTRIES)]
    with pytest.raises(PayloadTooLarge, match="configuration"):
        await offline_client.create_enrollment(product_id="monthly", user_id="u", configuration=biggest)


async def test_queries_and_commands_refuse_naive_times_and_bad_values(offline_client: EnrollmentsClient) -> None:
    with pytest.raises(ValueError, match="at must be timezone-aware"):
        await offline_client.is_valid_for_activation("any", datetime(2031, 1, 1))
    with pytest.raises(ValueError, match="'PAID' is not a valid OrderStatus"):
        await offline_client.order_status_changed("o-1", "PAID", enrollment_id="any")
    with pytest.raises(ValidationError, match="at_period_end and immediately exclude each other"):
        await offline_client.terminate("any", at_period_end=True, immediately=True)
    with pytest.raises(ValidationError, match="reason"):
        await offline_client.pause("any", reason="x" * 501)


# --- client library: refused by the workflow or the database -------------------------------------------


@pytest.mark.parametrize(
    ("product_id", "error_type", "message"),
    [
        ("no-such-product", "ProductNotFound", "product 'no-such-product' does not exist"),
        ("t-shirt", "NotAPlanProduct", "product 't-shirt' is a SIMPLE_PRODUCT, not a PLAN_PRODUCT"),
        ("broken", "InvalidPlan", "product 'broken' has an invalid plan: plan.billing_interval: Field required"),
    ],
)
async def test_create_refuses_products_that_cannot_enroll(
    stack: Stack, product_id: str, error_type: str, message: str
) -> None:
    enrollment_id = _new_id()
    with pytest.raises(EnrollmentCommandRejected) as raised:
        await stack.client.create_enrollment(product_id=product_id, user_id="u", enrollment_id=enrollment_id)
    assert raised.value.error_type == error_type
    assert message in str(raised.value)
    await stack.assert_nothing_stored(enrollment_id)
    assert not await stack.workflow_exists(enrollment_id), "the client refuses before it starts a workflow"


async def test_create_of_a_terminated_enrollment_is_refused_and_starts_nothing(stack: Stack) -> None:
    enrollment_id = await stack.client.create_enrollment(product_id="monthly", user_id="u", enrollment_id=_new_id())
    await stack.client.terminate(enrollment_id, immediately=True)
    run_id = await stack.latest_run(enrollment_id)
    before = await stack.rows(enrollment_id)
    with pytest.raises(EnrollmentCommandRejected, match="is TERMINATED, which is final") as raised:
        await stack.client.create_enrollment(product_id="monthly", user_id="u", enrollment_id=enrollment_id)
    assert raised.value.error_type == "EnrollmentConflict"
    assert await stack.latest_run(enrollment_id) == run_id, "no new run of the closed workflow"
    assert await stack.rows(enrollment_id) == before


async def test_duplicate_create_with_other_terms_is_refused_and_changes_nothing(stack: Stack) -> None:
    enrollment_id = await stack.client.create_enrollment(product_id="monthly", user_id="u", enrollment_id=_new_id())
    before = await stack.rows(enrollment_id)
    assert await stack.client.create_enrollment(product_id="monthly", user_id="u", enrollment_id=enrollment_id)
    with pytest.raises(EnrollmentCommandRejected, match="already exists with different terms") as raised:
        await stack.client.create_enrollment(product_id="monthly", user_id="u", quantity=2, enrollment_id=enrollment_id)
    assert raised.value.error_type == "EnrollmentConflict"
    assert await stack.rows(enrollment_id) == before
    assert (await stack.client.get_enrollment(enrollment_id)).quantity == 1


async def test_unknown_enrollment_and_order_are_named(stack: Stack) -> None:
    missing = _new_id()
    calls: list[Callable[[], Any]] = [
        lambda: stack.client.pause(missing),
        lambda: stack.client.resume(missing),
        lambda: stack.client.terminate(missing),
        lambda: stack.client.activate(missing),
        lambda: stack.client.get_enrollment(missing),
        lambda: stack.client.is_valid_for_activation(missing),
        lambda: stack.client.order_status_changed("o-1", OrderStatus.CONFIRMED, enrollment_id=missing),
    ]
    for call in calls:
        with pytest.raises(EnrollmentNotFound, match=f"enrollment '{missing}' not found"):
            await call()
    with pytest.raises(OrderNotFound, match="order 'no-such-order' not found"):
        await stack.client.order_status_changed("no-such-order", OrderStatus.CONFIRMED)
    with pytest.raises(EnrollmentNotFound):
        await stack.client.record_usage(missing, 1, "k-1")
    await stack.assert_nothing_stored(missing)


async def test_invalid_transitions_are_refused_and_change_nothing(stack: Stack) -> None:
    """A few cells through the client; tests/workflows/test_transition_table.py covers every state × command."""
    enrollment_id = await stack.client.create_enrollment(product_id="monthly", user_id="u", enrollment_id=_new_id())
    view = await stack.client.get_enrollment(enrollment_id)
    rows = await stack.rows(enrollment_id)
    refusals: list[tuple[Callable[[], Any], str]] = [
        (lambda: stack.client.resume(enrollment_id), "is already ACTIVE and has nothing scheduled"),
        (lambda: stack.client.activate(enrollment_id), "cannot activate"),
        (
            lambda: stack.client.order_status_changed("other", OrderStatus.CONFIRMED, enrollment_id=enrollment_id),
            "order 'other' is not an order of",
        ),
    ]
    for call, message in refusals:
        with pytest.raises(EnrollmentCommandRejected, match=message) as raised:
            await call()
        assert raised.value.error_type == "InvalidTransition"
    order = view.orders[0]
    await stack.client.order_status_changed(order.id, OrderStatus.FULFILLED, enrollment_id=enrollment_id)
    with pytest.raises(EnrollmentCommandRejected, match="is FULFILLED and cannot become PENDING"):
        await stack.client.order_status_changed(order.id, OrderStatus.PENDING, enrollment_id=enrollment_id)
    await stack.client.pause(enrollment_id)
    with pytest.raises(EnrollmentCommandRejected, match=r"is already PAUSED \(manual\)"):
        await stack.client.pause(enrollment_id)
    await stack.client.terminate(enrollment_id, immediately=True)
    after = await stack.rows(enrollment_id)
    for call, message in [
        (lambda: stack.client.resume(enrollment_id), "TERMINATED"),
        (lambda: stack.client.pause(enrollment_id), "TERMINATED"),
        (lambda: stack.client.terminate(enrollment_id), "TERMINATED"),
    ]:
        with pytest.raises(EnrollmentCommandRejected, match=message):
            await call()
    assert await stack.rows(enrollment_id) == after
    assert after["periods"] == rows["periods"] == 1


async def test_malformed_signal_is_dropped_and_malformed_update_refused(stack: Stack) -> None:
    enrollment_id = await stack.client.create_enrollment(product_id="monthly", user_id="u", enrollment_id=_new_id())
    handle = stack.env.client.get_workflow_handle(workflow_id_for(enrollment_id))
    await handle.signal(MessageName.PAUSE_SIGNAL, {"reason": ["not", "text"], "bogus": True})
    await handle.signal(MessageName.TERMINATE_SIGNAL, {"at_period_end": True, "immediately": True})
    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await handle.execute_update(MessageName.PAUSE_UPDATE, {"at_period_end": "maybe"})
    # The workflow decodes its messages itself: a raw caller's refusal names the message and the field.
    cause = raised.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == ErrorType.INVALID_INPUT
    assert cause.message == "pause: at_period_end: input should be a valid boolean, unable to interpret input"
    view = await stack.client.get_enrollment(enrollment_id)
    assert view.status == "ACTIVE" and view.scheduled is None
    assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING


async def test_conflicting_usage_key_is_refused(stack: Stack) -> None:
    enrollment_id = await stack.client.create_enrollment(product_id="metered", user_id="u", enrollment_id=_new_id())
    view = await stack.client.get_enrollment(enrollment_id)
    at = view.periods[0].start + timedelta(minutes=1)
    assert await stack.client.record_usage(enrollment_id, 5, "meter-1", at=at)
    assert not await stack.client.record_usage(enrollment_id, 5, "meter-1", at=at)  # same key, same units
    with pytest.raises(UsageConflict, match=r"'meter-1' .* was recorded with 5 units, not 7"):
        await stack.client.record_usage(enrollment_id, 7, "meter-1", at=at)
    assert (await stack.rows(enrollment_id))["usage"] == 1


# --- scenario files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_name", "message"),
    [
        ("invalid_naive.json", r"events\[1\]\.at: must include a UTC offset"),
        ("invalid_plan.json", "product.plan.billing_interval_count"),
        ("invalid_event_type.json", "unknown event type 'refund'"),
        ("invalid_date.json", "until: "),
        ("invalid_after_until.json", "is after until"),
    ],
)
def test_invalid_scenario_files_name_the_problem(file_name: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_scenario(SCENARIOS / file_name)


# --- command line and settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            [
                "preview",
                "--plan",
                '{"billing_interval": "MONTHS", "billing_interval_count": 0}',
                "--start",
                "2031-01-01T00:00:00Z",
            ],
            "plan.billing_interval_count: must be at least 1",
        ),
        (["preview", "--plan", "{}", "--start", "2031-01-01T00:00:00Z"], "plan.billing_interval: is required"),
        (["preview", "--plan", '{"billing_interval": "MONTHS"}', "--start", "2031-01-01T00:00"], "has no UTC offset"),
        (
            [
                "preview",
                "--plan",
                '{"billing_interval": "MONTHS"}',
                "--start",
                "2031-01-01T00:00:00Z",
                "--timezone",
                "Nowhere/City",
            ],
            "unknown IANA time zone 'Nowhere/City'",
        ),
        (["db", "upgrade", "--database-url", "mysql://root@localhost/x"], "unsupported database URL scheme 'mysql'"),
        (["create", "--product", "monthly", "--user", "u", "--quantity", "0"], "--quantity"),
        (["create", "--product", "monthly", "--user", "u", "--timezone", "Mars/Base"], "unknown IANA time zone"),
        (["create", "--product", "monthly", "--user", "u", "--configuration", "{not json"], "is not valid JSON"),
        (["create", "--product", "monthly", "--user", "u", "--start", "tomorrow"], "is not an ISO 8601 date-time"),
    ],
)
def test_cli_refuses_invalid_input_with_one_line(arguments: list[str], message: str) -> None:
    env = {"TEMPORAL_ADDRESS": "127.0.0.1:1", "DATABASE_URL": "sqlite:///./.no-such-dir/never.db"}
    result = CliRunner().invoke(app, arguments, env=env)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_invalid_security_and_fault_settings_are_named() -> None:
    with pytest.raises(CodecKeyError, match="key 1 is 9 bytes; AES-256 needs 32"):
        parse_keys("c2hvcnQga2V5")
    with pytest.raises(CodecKeyError, match="key 1 is not valid base64"):
        parse_keys("not base64!")
    with pytest.raises(ValueError, match="unknown fault point 'before_commit'"):
        parse_fault_spec("before_commit:0.1")
    with pytest.raises(ValueError, match="must be between 0 and 1"):
        parse_fault_spec("after_commit:5")
    assert parse_fault_spec("") == {}
