"""Markdown "current details" of an enrollment, shown in the Temporal Web UI (*User Metadata* → *Current Details*).

Times are to the second on the enrollment's wall clock with their offset (``2031-01-31 10:00:00 +01:00``),
the zone named once at the top. The pane is narrow (about 450 px in a 1280 px window) and the UI's markdown
frame gives table cells no padding, so the periods table is short: the period's number (which marks where
a row starts when its cells wrap), start, end and order. A cell may wrap between a date and its time but
never inside either (the offset is held to its time by a no-break space), and every cell but the last ends
in no-break spaces that keep the columns apart.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from adapters.calendar import local_time_text
    from adapters.domain import Order, Period
    from adapters.dunning import dunning_summary
    from adapters.lifecycle import EnrollmentView
    from adapters.text import escape_markdown

RECENT_PERIODS = 6
NO_BREAK = "\u00a0"
GUTTER = NO_BREAK * 3
"""Ends every table cell but the last: the frame's table cells have no padding of their own."""


def _when(value: datetime | None, timezone: str) -> str:
    if value is None:
        return "—"
    date, clock, offset = local_time_text(value, timezone).split(" ")
    return f"{date} {clock}{NO_BREAK}{offset}"


def _billing(period: Period, orders: dict[str, Order]) -> str:
    """What bills the period: its order and the order's status, or why there is none."""
    order = orders.get(period.order_id) if period.order_id else None
    if order is not None:
        return f"{order.number} {order.status}"
    if period.order_id is not None:
        return str(period.order_status or "ordered")
    if period.is_trial:
        return "trial"
    return "nothing to bill" if period.billed_at is not None else "—"


def render_details(view: EnrollmentView) -> str:
    """Status, schedule and the latest periods with their orders, as a short markdown document."""
    zone = view.timezone
    status = str(view.status) + (f" ({view.pause_reason})" if view.pause_reason else "")
    # What callers typed (ids, reasons) is escaped: it shows as typed, never as a link, an image or a line.
    product, user = escape_markdown(view.product_id), escape_markdown(view.user_id)
    lines = [
        f"## Enrollment {escape_markdown(view.number or view.id)}",
        f"**Status:** {status}  ",
        f"**Product:** {product} × {view.quantity} · **User:** {user}  ",
        f"**Adapter:** {escape_markdown(view.adapter_key or '—')}  ",
        f"**Time zone:** {zone}  ",
        f"**Next wake-up:** {_when(view.next_wake_up, zone)}  ",
    ]
    if view.attention is not None:
        lines.append(f"**Needs attention:** {escape_markdown(view.attention)}  ")
    if view.expires is not None:
        lines.append(f"**Expires:** {_when(view.expires, zone)}  ")
    if view.scheduled is not None:
        lines.append(f"**Scheduled:** {view.scheduled.kind} at {_when(view.scheduled.at, zone)}  ")
    for entry in view.dunning:  # each unpaid order's schedule: open balance, steps done, the next step
        lines.append(f"**Dunning:** {escape_markdown(dunning_summary(entry, lambda at: _when(at, zone)))}  ")
    pending = view.pending_change
    if pending is not None:
        change = f"{escape_markdown(pending.product_id)} × {pending.quantity}"
        lines.append(f"**Change at period end:** {change} at {_when(pending.at, zone)}  ")
    orders = {order.id: order for order in view.orders}
    shown = view.periods[-RECENT_PERIODS:]
    lines += [
        "",
        f"### Periods ({len(view.periods)}, latest {len(shown)})",
        f"| #{GUTTER} | start{GUTTER} | end{GUTTER} | order |",
        "|--:|---|---|---|",
    ]
    first = len(view.periods) - len(shown) + 1
    for number, period in enumerate(shown, start=first):
        start, end = _when(period.start, zone), _when(period.end, zone)
        lines.append(f"| {number}{GUTTER} | {start}{GUTTER} | {end}{GUTTER} | {_billing(period, orders)} |")
    if view.log:
        latest = view.log[-1]
        lines += ["", f"**Last event:** {_when(latest.at, zone)} · {latest.status} · {escape_markdown(latest.info)}"]
    return "\n".join(lines)
