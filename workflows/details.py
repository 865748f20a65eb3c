"""Markdown "current details" of an enrollment, shown in the Temporal Web UI."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from adapters.lifecycle import EnrollmentView

RECENT_PERIODS = 6


def _when(value: object) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else "—"


def render_details(view: EnrollmentView) -> str:
    """Status, schedule and the latest periods with their orders, as a short markdown document."""
    status = str(view.status) + (f" ({view.pause_reason})" if view.pause_reason else "")
    lines = [
        f"## Enrollment {view.number or view.id}",
        f"**Status:** {status}  ",
        f"**Product:** `{view.product_id}` × {view.quantity} · **User:** `{view.user_id}` · **Adapter:** "
        f"`{view.adapter_key or '—'}`  ",
        f"**Next wake-up:** {_when(view.next_wake_up)}  ",
    ]
    if view.expires is not None:
        lines.append(f"**Expires:** {_when(view.expires)}  ")
    if view.scheduled is not None:
        lines.append(f"**Scheduled:** {view.scheduled.kind} at {_when(view.scheduled.at)}  ")
    orders = {order.id: order for order in view.orders}
    shown = view.periods[-RECENT_PERIODS:]
    lines += [
        "",
        f"### Periods ({len(view.periods)}, latest {len(shown)})",
        "| start | end | trial | order | order status |",
        "|---|---|---|---|---|",
    ]
    for period in shown:
        order = orders.get(period.order_id) if period.order_id else None
        lines.append(
            f"| {_when(period.start)} | {_when(period.end)} | {'yes' if period.is_trial else ''} | "
            f"{order.number if order else ''} | {order.status if order else ''} |"
        )
    if view.log:
        latest = view.log[-1]
        lines += ["", f"**Last event:** {_when(latest.at)} · {latest.status} · {latest.info}"]
    return "\n".join(lines)
