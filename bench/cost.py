"""Cost per period counted from fetched workflow histories: history events and Temporal Cloud billable actions.

Actions follow https://docs.temporal.io/cloud/actions, counted from history events:

- a run started (by the client or by continue-as-new): 1 — counted on the new run's ``WorkflowExecutionStarted``,
  so a continue-as-new is counted once (its ``ContinuedAsNew`` event is not counted again);
- ``TimerStarted`` (``workflow.sleep`` and ``wait_condition`` with a timeout): 1;
- ``ActivityTaskScheduled``: 1, plus 1 per retry (``attempt`` > 1 on ``ActivityTaskStarted``);
- ``MarkerRecorded`` (local activities, patches): 1 per workflow task that recorded any, however many;
- ``UpsertWorkflowSearchAttributes``: 1 (several attributes in one command are one action);
- ``WorkflowExecutionSignaled``, ``WorkflowExecutionUpdateAccepted``, ``SignalExternalWorkflowExecutionInitiated``,
  ``WorkflowExecutionOptionsUpdated``: 1; ``StartChildWorkflowExecutionInitiated``: 2.

Queries and heartbeats are billable but leave no history event; a renewal makes neither.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory

_ONE_ACTION = {
    EventType.EVENT_TYPE_TIMER_STARTED: "timer",
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activity",
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: "search_attribute_upsert",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signal",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "update",
    EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: "signal",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED: "options_update",
}


def actions_of(history: WorkflowHistory) -> Counter[str]:
    """Billable actions of one run, by kind."""
    actions: Counter[str] = Counter()
    marker_tasks: set[int] = set()
    for event in history.events:
        kind = _ONE_ACTION.get(event.event_type)
        if kind is not None:
            actions[kind] += 1
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            started = event.workflow_execution_started_event_attributes
            actions["continue_as_new" if started.continued_execution_run_id else "workflow_start"] += 1
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            actions["activity_retry"] += max(event.activity_task_started_event_attributes.attempt - 1, 0)
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker_tasks.add(event.marker_recorded_event_attributes.workflow_task_completed_event_id)
        elif event.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            actions["child_workflow"] += 2
    if marker_tasks:
        actions["local_activity_task"] += len(marker_tasks)
    return actions


async def run_histories(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """Every run of ``workflow_id``, oldest first (walking back from the latest run through continue-as-new)."""
    runs: list[WorkflowHistory] = []
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs.append(history)
        previous = history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
        if not previous:
            return list(reversed(runs))
        run_id = previous


def periods_of(history: WorkflowHistory) -> int:
    """Periods a completed run created: the periods the results of its ``advance`` local activities returned.

    A local activity's result is recorded in its marker (``details["result"]``); the run's state cannot tell,
    since it carries only the latest periods.
    """
    last = history.events[-1]
    if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
        raise ValueError("only runs that continued as new have a known period count")
    created = 0
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        details = event.marker_recorded_event_attributes.details
        if "result" not in details:
            continue
        for payload in details["result"].payloads:
            result: Any = json.loads(payload.data)
            if isinstance(result, dict) and isinstance(result.get("periods"), list):
                created += len(result["periods"])
    return created


def steady_state_cost(histories_per_workflow: list[list[WorkflowHistory]]) -> dict[str, Any]:
    """Events and actions per period over the steady-state runs: every run but each workflow's first
    (registration) and latest (still open). Raises ``ValueError`` when there is no such run."""
    steady = [run for runs in histories_per_workflow for run in runs[1:-1]]
    if not steady:
        raise ValueError("no steady-state run: let the enrollments run for more periods")
    periods = sum(periods_of(run) for run in steady)
    events = sum(len(run.events) for run in steady)
    history_bytes = sum(event.ByteSize() for run in steady for event in run.events)
    actions: Counter[str] = Counter()
    event_types: Counter[str] = Counter()
    for run in steady:
        actions.update(actions_of(run))
        event_types.update(_event_name(event) for event in run.events)
    total_actions = sum(actions.values())
    return {
        "steady_runs": len(steady),
        "periods": periods,
        "events": events,
        "events_per_period": round(events / periods, 2),
        "history_bytes_per_period": round(history_bytes / periods),
        "actions": total_actions,
        "actions_per_period": round(total_actions / periods, 3),
        "actions_per_period_by_kind": {kind: round(count / periods, 3) for kind, count in sorted(actions.items())},
        "events_per_period_by_type": {name: round(count / periods, 3) for name, count in sorted(event_types.items())},
        "run_sizes": [len(run.events) for runs in histories_per_workflow[:1] for run in runs],
        # What a run carries before its first period: the state in its start event (continue-as-new input).
        "run_start_bytes": round(sum(run.events[0].ByteSize() for run in steady) / len(steady)),
        # The first run: registration (update-with-start) and its periods.
        "first_run_actions": dict(sorted(actions_of(histories_per_workflow[0][0]).items())),
        "first_run_periods": periods_of(histories_per_workflow[0][0]),
    }


def _event_name(event: HistoryEvent) -> str:
    return EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
