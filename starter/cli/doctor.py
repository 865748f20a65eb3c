"""``enrollments doctor [--repair] [--json]``: every open enrollment's workflow, examined against the database.

Each INITIAL, ACTIVE and PAUSED enrollment's workflow must run, not fail its tasks, need no attention and
agree with the database on its status, latest period and scheduled action (:mod:`activities.checkup`). Exit
status 0 when nothing is wrong (or everything found was repaired with ``--repair``), 1 otherwise.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from pydantic import Field

from activities.checkup import Checkup, Finding, Problem, RebuildFailed
from activities.persistence import Store
from adapters.domain import DomainModel, Enrollment, EnrollmentStatus
from starter.cli.errors import EXIT_RUNTIME
from starter.cli.execution import JsonOption, echo_json, with_client
from starter.cli.output import echo_lines, table_lines
from starter.client import EnrollmentsClient

CHECKED_STATUSES = (EnrollmentStatus.INITIAL, EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED)
PAGE_SIZE = 200
CONCURRENCY = 10


class Diagnosis(DomainModel):
    """What ``doctor`` found: how many enrollments it checked, and each finding."""

    checked: int = 0
    findings: list[Finding] = Field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(finding.repaired is not None for finding in self.findings)


def register(app: typer.Typer) -> None:
    app.command()(doctor)


async def diagnose(client: EnrollmentsClient, *, repair: bool) -> Diagnosis:
    """Examine every open enrollment's workflow (``repair``: and repair what can be)."""
    store: Store = client.store()
    checkup = Checkup(client.client, store, client.task_queue, client.next_period_attribute)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def examine(enrollment: Enrollment) -> list[Finding]:
        async with gate:
            try:
                return await checkup.examine(enrollment, repair=repair, query=True)
            except RebuildFailed as error:
                return [Finding(enrollment_id=enrollment.id, problem=Problem.MISSING, message=str(error))]

    diagnosis = Diagnosis()
    after: str | None = None
    while True:
        page = await store.enrollments.page(CHECKED_STATUSES, after_id=after, limit=PAGE_SIZE)
        for findings in await asyncio.gather(*(examine(enrollment) for enrollment in page)):
            diagnosis.findings += findings
        diagnosis.checked += len(page)
        if len(page) < PAGE_SIZE:
            return diagnosis
        after = page[-1].id


def doctor(
    ctx: typer.Context,
    repair: Annotated[bool, typer.Option("--repair", help="Repair what can be (see docs/operators.md).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Check that every open enrollment's workflow runs, is healthy and agrees with the database."""
    diagnosis = with_client(ctx, lambda client: diagnose(client, repair=repair))
    if as_json:
        echo_json({**diagnosis.model_dump(mode="json"), "healthy": diagnosis.healthy})
    elif not diagnosis.findings:
        typer.echo(f"{diagnosis.checked} open enrollments checked: every workflow runs and agrees with the database")
    else:
        rows = [[finding.problem, finding.message, finding.repaired or "—"] for finding in diagnosis.findings]
        echo_lines(
            [f"{diagnosis.checked} open enrollments checked:", *table_lines(["PROBLEM", "WHAT", "REPAIRED"], rows)]
        )
    if not diagnosis.healthy:
        raise typer.Exit(EXIT_RUNTIME)
