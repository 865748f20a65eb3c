"""The Temporal Web UI as operators use it, in a real headless Chromium (Debian's ``chromium``), 1280 px wide.

Starts the embedded dev stack (shared per session), creates enrollments (some paused, one in Zurich time with
a few periods) and checks what the Web UI renders: the list filtered by the enrollment search attributes,
the Enrollment* columns and the saved views of docs/operators.md (enrollments apart from the order
generator's runs), the static summary and the current details of an enrollment (its times, and that no
cell of the details overflows), and the descriptions of its queries and signals. Playwright drives
``/usr/bin/chromium``; it never downloads a browser. Without Chromium the test fails and says how to install
it (``.ci/run`` does).

``ENROLLMENTS_SCREENSHOT_DIR=docs`` writes the screenshots of README.md and docs/operators.md there instead
of a temporary directory.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Frame, Page, ViewportSize, expect, sync_playwright

from adapters.calendar import local_time_text
from adapters.domain import BillingInterval, OrderStatus, Product, ProductPlan
from adapters.lifecycle import generator_task_queue
from tests.support.dev_stack_env import ThreadedDevStack
from tests.support.temporal_env import add_product
from workflows.order_generator import GenerateEnrollmentOrders, GenerateOrdersInput

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000
WINDOW: ViewportSize = {"width": 1280, "height": 900}
expect.set_options(timeout=TIMEOUT_MS)

ENROLLMENT_COLUMNS = ["EnrollmentStatus", "EnrollmentProductId", "EnrollmentUserId", "EnrollmentNextPeriodAt"]
VIEWS = {
    "Enrollments": 'WorkflowType = "EnrollmentWorkflow"',
    "Order generator": 'WorkflowType = "GenerateEnrollmentOrders"',
}
"""The saved views docs/operators.md describes: name and query."""
WORKFLOW_ID = re.compile(r"^(enrollment-|generate-enrollment-orders-)")


@dataclass(frozen=True)
class Seeded:
    coffee: str
    gym: str
    active: list[str]
    paused: list[str]
    users: dict[str, str]
    zurich: str
    """An active enrollment in Europe/Zurich that started 9 minutes ago: a few periods, the first one paid."""


@pytest.fixture(scope="module")
def seeded(dev_stack: ThreadedDevStack) -> Seeded:
    suffix = uuid.uuid4().hex[:6]
    coffee, gym = f"webui-coffee-{suffix}", f"webui-gym-{suffix}"
    database_url = dev_stack.config.effective_database_url
    client = dev_stack.stack.client
    plans = {
        coffee: ProductPlan(billing_interval=BillingInterval.MINUTES, billing_interval_count=2),
        gym: ProductPlan(
            billing_interval=BillingInterval.MINUTES,
            billing_interval_count=5,
            trial_interval=BillingInterval.MINUTES,
            trial_interval_count=1,
        ),
    }
    for product_id, plan in plans.items():
        dev_stack.run(add_product(database_url, product_id, plan))
    people = [("alice", coffee, False), ("bob", gym, False), ("carol", coffee, True), ("dave", gym, True)]
    users: dict[str, str] = {}
    active: list[str] = []
    paused: list[str] = []
    for name, product_id, pause in people:
        enrollment_id = f"{name}-{suffix}"
        users[enrollment_id] = f"{name}-{suffix}"
        dev_stack.run(
            client.create_enrollment(product_id=product_id, user_id=users[enrollment_id], enrollment_id=enrollment_id)
        )
        if pause:
            dev_stack.run(client.pause(enrollment_id, reason="web UI test"))
            paused.append(enrollment_id)
        else:
            active.append(enrollment_id)
    zurich = f"erin-{suffix}"
    users[zurich] = zurich
    started = datetime.now(UTC) - timedelta(minutes=9)
    create = client.create_enrollment(
        product_id=coffee, user_id=zurich, enrollment_id=zurich, timezone="Europe/Zurich", start=started, backdate=True
    )
    dev_stack.run(create)
    first_order = dev_stack.run(client.get_enrollment(zurich)).orders[0]
    dev_stack.run(client.order_status_changed(first_order.id, OrderStatus.CONFIRMED))
    active.append(zurich)
    assert Product(id=coffee, plan=plans[coffee]).plan is not None
    return Seeded(coffee=coffee, gym=gym, active=active, paused=paused, users=users, zurich=zurich)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium is required for the Web UI test and is not installed at {CHROMIUM}: "
            "run `apt-get update && apt-get install -y chromium` (.ci/run does this in CI)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=WINDOW, timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("ENROLLMENTS_SCREENSHOT_DIR")
    return Path(configured) if configured else tmp_path_factory.mktemp("screenshots")


def workflow_id(enrollment_id: str) -> str:
    return f"enrollment-{enrollment_id}"


def listed(page: Page) -> list[str]:
    """The workflow ids the Web UI lists on the current page."""
    rows = page.locator('[data-testid="workflows-summary-configurable-table-row"]')
    expect(rows.first).to_be_visible()
    return sorted(text.strip() for text in rows.locator("a").all_inner_texts() if WORKFLOW_ID.match(text.strip()))


def open_list(page: Page, stack: ThreadedDevStack, query: str) -> list[str]:
    """The workflow ids the Web UI lists for a visibility query."""
    page.goto(f"{stack.config.namespace_url()}?query={quote(query)}")
    return listed(page)


def open_tab(page: Page, stack: ThreadedDevStack, enrollment_id: str, tab: str) -> None:
    """A tab of the enrollment's workflow page, straight at its current run."""
    handle = stack.stack.client.client.get_workflow_handle(workflow_id(enrollment_id))
    run_id = stack.run(handle.describe()).run_id
    page.goto(f"{stack.config.namespace_url()}/{workflow_id(enrollment_id)}/{run_id}/{tab}")


def products_query(seeded: Seeded) -> str:
    return f'EnrollmentProductId IN ("{seeded.coffee}", "{seeded.gym}")'


def details_frame(page: Page) -> Frame:
    """The frame of *User Metadata* → *Current Details* (the summary's frame comes first)."""
    frame = page.locator("iframe").last.element_handle().content_frame()
    assert frame is not None
    return frame


CELL_LAYOUT = """() => {
    const text = (cell) => cell.textContent.replace(/\\s+/g, " ").trim();
    const lines = (cell) => {
        const range = document.createRange();
        range.selectNodeContents(cell);
        return new Set([...range.getClientRects()].map((rect) => Math.round(rect.top))).size;
    };
    return {
        cells: [...document.querySelectorAll("th, td")].map((cell) => ({
            text: text(cell),
            overflows: cell.scrollWidth > cell.clientWidth,
            lines: lines(cell),
        })),
        rows: [...document.querySelectorAll("tbody tr")].map((row) => [...row.cells].map(text)),
        width: document.documentElement.clientWidth,
        scrollWidth: document.documentElement.scrollWidth,
    };
}"""
"""The table of a document: every cell (its text, whether its content is wider than the cell, on how many lines
it is rendered), the body's rows, and whether the document is wider than its frame."""
LOCAL_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d$")


def add_enrollment_columns(page: Page) -> None:
    """docs/operators.md: the Enrollment* columns in, Run ID, Start and End out, Type last."""
    page.get_by_test_id("workflows-summary-table-configuration-button").click()
    for name in ENROLLMENT_COLUMNS:
        page.get_by_test_id(f"orderable-list-item-{name}-add-button").click()
    for name in ("Run ID", "Start", "End"):
        page.get_by_test_id(f"orderable-list-item-{name}-remove-button").click()
    for _ in ENROLLMENT_COLUMNS:
        page.get_by_test_id("orderable-list-item-Type-move-down-button").click()


def save_view(page: Page, stack: ThreadedDevStack, name: str) -> None:
    page.goto(f"{stack.config.namespace_url()}?query={quote(VIEWS[name])}")
    page.get_by_test_id("create-view-button").click()
    page.get_by_test_id("workflow-save-view-modal-input").fill(name)
    page.get_by_role("dialog").get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_test_id("saved-views-button")).to_have_text(re.compile(name))


def choose_view(page: Page, stack: ThreadedDevStack, name: str) -> list[str]:
    """The workflow ids a saved view lists, chosen from the *Saved Views* menu."""
    page.goto(stack.config.namespace_url())
    page.get_by_test_id("saved-views-button").click()
    page.get_by_text(name, exact=True).click()
    expect(page).to_have_url(re.compile(re.escape(quote(VIEWS[name]).replace("%20", "+"))))
    return listed(page)


def test_paused_filter_lists_exactly_the_paused_enrollments(
    page: Page, dev_stack: ThreadedDevStack, seeded: Seeded, screenshots: Path
) -> None:
    listed = open_list(page, dev_stack, f'EnrollmentStatus = "PAUSED" AND {products_query(seeded)}')
    assert listed == sorted(workflow_id(enrollment) for enrollment in seeded.paused)
    every = open_list(page, dev_stack, products_query(seeded))
    assert every == sorted(workflow_id(enrollment) for enrollment in seeded.active + seeded.paused)
    expect(page.get_by_text("EnrollmentWorkflow").first).to_be_visible()


def test_filters_by_product_user_and_next_period(page: Page, dev_stack: ThreadedDevStack, seeded: Seeded) -> None:
    by_product = open_list(page, dev_stack, f'EnrollmentProductId = "{seeded.gym}"')
    assert by_product == sorted(workflow_id(e) for e in seeded.active + seeded.paused if e.startswith(("bob", "dave")))
    alice = seeded.active[0]
    assert open_list(page, dev_stack, f'EnrollmentUserId = "{seeded.users[alice]}"') == [workflow_id(alice)]
    # Manually paused enrollments have no next period; the active ones do.
    upcoming = open_list(
        page, dev_stack, f'EnrollmentNextPeriodAt > "2000-01-01T00:00:00Z" AND {products_query(seeded)}'
    )
    assert upcoming == sorted(workflow_id(enrollment) for enrollment in seeded.active)


def test_summary_and_current_details_render(
    page: Page, dev_stack: ThreadedDevStack, seeded: Seeded, screenshots: Path
) -> None:
    paused = seeded.paused[0]
    view = dev_stack.run(dev_stack.stack.client.get_enrollment(paused))
    open_tab(page, dev_stack, paused, "user-metadata")
    # The UI renders the summary and the details (markdown) in sandboxed frames: summary first.
    summary, details = page.frame_locator("iframe").first, page.frame_locator("iframe").last
    expect(summary.get_by_text(f"{view.number} · {view.product_id} · {view.user_id}")).to_be_visible()
    expect(details.get_by_role("heading", name=f"Enrollment {view.number}")).to_be_visible()
    expect(details.get_by_text("PAUSED (manual)")).to_be_visible()
    expect(details.get_by_text("Periods (1, latest 1)")).to_be_visible()


def test_current_details_show_local_times_and_fit_a_1280_window(
    page: Page, dev_stack: ThreadedDevStack, seeded: Seeded, screenshots: Path
) -> None:
    number = dev_stack.run(dev_stack.stack.client.get_enrollment(seeded.zurich)).number
    open_tab(page, dev_stack, seeded.zurich, "user-metadata")
    expect(page.frame_locator("iframe").last.get_by_role("heading", name=f"Enrollment {number}")).to_be_visible()
    expect(page.frame_locator("iframe").last.get_by_text("Europe/Zurich")).to_be_visible()
    layout: dict[str, Any] = details_frame(page).evaluate(CELL_LAYOUT)
    view = dev_stack.run(dev_stack.stack.client.get_enrollment(seeded.zurich))  # all the details showed, and more

    # Times to the second on the enrollment's wall clock, with its offset; each period's order and its status.
    orders = {order.id: f"{order.number} {order.status}" for order in view.orders}
    expected = {
        local_time_text(period.start, "Europe/Zurich"): (
            local_time_text(period.end, "Europe/Zurich"),
            orders[period.order_id or ""],
        )
        for period in view.periods
    }
    rows = layout["rows"]
    assert len(rows) >= 4, rows
    for _, start, end, order in rows:
        assert LOCAL_TIME.match(start) and (end, order) == expected[start], (start, end, order)
    assert any(order.endswith(" CONFIRMED") for *_, order in rows) or len(view.periods) > 6
    # The layout fits: no cell is wider than its column, the document no wider than its frame, the frame in the window.
    assert [cell["text"] for cell in layout["cells"] if cell["overflows"]] == []
    assert [cell["text"] for cell in layout["cells"] if cell["lines"] > 2] == [], "a time wraps only before its clock"
    assert layout["scrollWidth"] <= layout["width"], layout
    frame_box = page.locator("iframe").last.bounding_box()
    assert frame_box is not None and frame_box["x"] + frame_box["width"] <= WINDOW["width"]
    # The screenshot: as wide as the window, as tall as the details.
    page.set_viewport_size({"width": WINDOW["width"], "height": int(frame_box["y"] + frame_box["height"]) + 24})
    page.screenshot(path=str(screenshots / "webui-enrollment-details.png"))


def test_enrollment_columns_and_saved_views_keep_the_order_generator_apart(
    page: Page, dev_stack: ThreadedDevStack, seeded: Seeded, screenshots: Path
) -> None:
    """docs/operators.md, as an operator does it: the Enrollment* columns, then one saved view per workflow type."""
    run_id = f"generate-enrollment-orders-webui-{uuid.uuid4().hex[:6]}"
    temporal = dev_stack.stack.client.client
    run = temporal.execute_workflow(
        GenerateEnrollmentOrders.run,
        GenerateOrdersInput(),
        id=run_id,
        task_queue=generator_task_queue(dev_stack.config.task_queue),
    )
    dev_stack.run(run)
    page.goto(dev_stack.config.namespace_url())
    add_enrollment_columns(page)
    page.screenshot(path=str(screenshots / "webui-columns.png"))
    page.get_by_test_id("drawer-close-button").click()
    for name in VIEWS:
        save_view(page, dev_stack, name)

    generator_runs = choose_view(page, dev_stack, "Order generator")
    assert run_id in generator_runs and all(item.startswith("generate-enrollment-orders-") for item in generator_runs)
    enrollments = choose_view(page, dev_stack, "Enrollments")
    assert enrollments and all(item.startswith("enrollment-") for item in enrollments), enrollments
    headers = page.get_by_test_id(re.compile("^workflows-summary-table-header-cell-")).all_inner_texts()
    assert [header.strip() for header in headers] == ["Status", "Workflow ID", *ENROLLMENT_COLUMNS, "Type"]

    # The columns show each enrollment's search attributes (README screenshot: only the seeded ones).
    page.get_by_title("Collapse Navigation").click()
    query = f"{VIEWS['Enrollments']} AND {products_query(seeded)}"
    assert open_list(page, dev_stack, query) == sorted(workflow_id(item) for item in seeded.active + seeded.paused)
    alice = seeded.active[0]
    row = page.get_by_test_id("workflows-summary-configurable-table-row").filter(has_text=workflow_id(alice))
    for value in ("ACTIVE", seeded.coffee, seeded.users[alice]):
        expect(row.get_by_text(value, exact=True)).to_be_visible()
    target = screenshots / "webui-enrollments.png"
    page.screenshot(path=str(target))
    assert target.stat().st_size > 10_000


def test_queries_and_signals_show_their_descriptions(page: Page, dev_stack: ThreadedDevStack, seeded: Seeded) -> None:
    active = seeded.active[0]
    open_tab(page, dev_stack, active, "query")
    page.get_by_test_id("query-select-button").click()
    options = page.get_by_role("option")
    expect(options.filter(has_text="The full enrollment: status, periods, orders")).to_be_visible()
    expect(options.filter(has_text="Whether the subscription grants access at")).to_be_visible()
    page.keyboard.press("Escape")
    page.get_by_role("button", name="More Actions").click()
    page.get_by_role("menuitem", name="Send a Signal").click()
    dialog = page.get_by_role("dialog").filter(has_text="Signal")
    dialog.get_by_role("button").filter(has_text="Signal name").or_(
        dialog.locator("button[aria-haspopup]")
    ).first.click()
    signals = page.get_by_role("option")
    expect(signals.filter(has_text="Pause now, or at the end of the current period.")).to_be_visible()
    expect(signals.filter(has_text="Resume a manual pause")).to_be_visible()
