"""The Temporal Web UI as operators use it, in a real headless Chromium (Debian's ``chromium``).

Starts the embedded dev stack (shared per session), creates enrollments (some paused) and checks what the
Web UI renders: the list filtered by the enrollment search attributes, the static summary and the current
details of an enrollment, and the descriptions of its queries and signals. Playwright drives
``/usr/bin/chromium``; it never downloads a browser. Without Chromium the test fails and says how to install
it (``.ci/run`` does).

``ENROLLMENTS_SCREENSHOT_DIR=docs`` writes the README's screenshots there instead of a temporary directory.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from adapters.domain import BillingInterval, Product, ProductPlan
from tests.support.dev_stack_env import ThreadedDevStack
from tests.support.temporal_env import add_product

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
expect.set_options(timeout=TIMEOUT_MS)


@dataclass(frozen=True)
class Seeded:
    coffee: str
    gym: str
    active: list[str]
    paused: list[str]
    users: dict[str, str]


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
    assert Product(id=coffee, plan=plans[coffee]).plan is not None
    return Seeded(coffee=coffee, gym=gym, active=active, paused=paused, users=users)


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
    context = browser.new_context(viewport={"width": 1400, "height": 900}, timezone_id="UTC")
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


def open_list(page: Page, stack: ThreadedDevStack, query: str) -> list[str]:
    """The workflow ids the Web UI lists for a visibility query."""
    page.goto(f"{stack.config.namespace_url()}?query={quote(query)}")
    rows = page.locator('[data-testid="workflows-summary-configurable-table-row"]')
    expect(rows.first).to_be_visible()
    return sorted(
        text.strip() for text in rows.locator("a").all_inner_texts() if text.strip().startswith("enrollment-")
    )


def open_tab(page: Page, stack: ThreadedDevStack, enrollment_id: str, tab: str) -> None:
    """A tab of the enrollment's workflow page, straight at its current run."""
    handle = stack.stack.client.client.get_workflow_handle(workflow_id(enrollment_id))
    run_id = stack.run(handle.describe()).run_id
    page.goto(f"{stack.config.namespace_url()}/{workflow_id(enrollment_id)}/{run_id}/{tab}")


def products_query(seeded: Seeded) -> str:
    return f'EnrollmentProductId IN ("{seeded.coffee}", "{seeded.gym}")'


def test_paused_filter_lists_exactly_the_paused_enrollments(
    page: Page, dev_stack: ThreadedDevStack, seeded: Seeded, screenshots: Path
) -> None:
    listed = open_list(page, dev_stack, f'EnrollmentStatus = "PAUSED" AND {products_query(seeded)}')
    assert listed == sorted(workflow_id(enrollment) for enrollment in seeded.paused)
    every = open_list(page, dev_stack, products_query(seeded))
    assert every == sorted(workflow_id(enrollment) for enrollment in seeded.active + seeded.paused)
    expect(page.get_by_text("EnrollmentWorkflow").first).to_be_visible()
    target = screenshots / "webui-enrollments.png"
    page.screenshot(path=str(target))
    assert target.stat().st_size > 10_000


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
    page.screenshot(path=str(screenshots / "webui-enrollment-details.png"))


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
