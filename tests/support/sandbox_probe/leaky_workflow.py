"""A workflow that imports I/O code at module level: the project's sandbox must refuse it."""

from temporalio import workflow

import activities.persistence.store  # noqa: F401  (the leak under test)


@workflow.defn
class LeakyWorkflow:
    @workflow.run
    async def run(self) -> None:
        return None
