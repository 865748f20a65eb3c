"""Replay the committed histories with the production sandbox: a change that breaks them fails CI.

The histories in tests/workflows/histories/ were recorded by ``python -m tests.workflows.record_histories``. If
this test fails after a workflow change, the change would break running enrollments: guard it with
``workflow.patched`` (docs/changing-workflows.md) instead of re-recording.
"""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from starter.runtime.worker import DELIVERY_WORKFLOWS, GENERATOR_WORKFLOWS, WORKFLOWS, sandbox_runner
from tests.workflows.record_histories import HISTORIES, SCENARIOS

HISTORY_FILES = sorted(HISTORIES.glob("*.json"))
HISTORY_TEXTS = {path.stem: path.read_text() for path in HISTORY_FILES}


def test_every_scenario_has_a_recorded_history() -> None:
    recorded = {path.name.split(".run")[0] for path in HISTORY_FILES}
    assert recorded == set(SCENARIOS)
    assert any(".run1." in path.name for path in HISTORY_FILES), "a continued-as-new run is recorded"


@pytest.mark.parametrize("name", sorted(HISTORY_TEXTS))
async def test_recorded_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(name, HISTORY_TEXTS[name])
    replayer = Replayer(
        workflows=[*WORKFLOWS, *GENERATOR_WORKFLOWS, *DELIVERY_WORKFLOWS],
        workflow_runner=sandbox_runner(),
        data_converter=pydantic_data_converter,
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
