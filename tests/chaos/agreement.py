"""The fault suite's agreement check: after the faults, every workflow agrees with the database and none is wedged.

It is ``enrollments doctor`` without repairs (:class:`activities.checkup.Checkup`, the same code) over every
enrollment of the run, TERMINATED ones included (their workflow must have completed with a final view that
agrees). With 1-minute periods some enrollment is always between committing a period and recording it in its
workflow, so an enrollment with a finding is examined again a few seconds later: only a finding that stays
counts. ``disagreements``: enrollments whose workflow and database differ on status, latest period or scheduled
action. ``wedged``: enrollments whose workflow tasks keep failing, that need attention, or whose workflow is not
running while the database has them open (missing, failed, completed or closed in Temporal) or did not answer.
"""

from __future__ import annotations

import asyncio

from activities.checkup import Checkup, Finding, Problem
from adapters.domain import Enrollment, EnrollmentStatus
from starter.client import EnrollmentsClient
from tests.chaos.harness import Report, log

PAGE = 200
CONCURRENCY = 8


async def check_agreement(
    client: EnrollmentsClient, report: Report, *, rounds: int = 4, pause: float = 5.0
) -> dict[str, list[Finding]]:
    """Examine every enrollment, then those with findings again up to ``rounds`` times; count what stays."""
    store = client.store()
    checkup = Checkup(client.client, store, client.task_queue, client.next_period_attribute)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def examine(enrollment: Enrollment) -> tuple[str, list[Finding]]:
        async with gate:
            try:
                return enrollment.id, await checkup.examine(enrollment, repair=False, query=True)
            except Exception as error:  # an answer that never came is a finding too
                message = f"enrollment {enrollment.id}: not examined ({type(error).__name__}: {error})"
                return enrollment.id, [
                    Finding(enrollment_id=enrollment.id, problem=Problem.UNREACHABLE, message=message)
                ]

    pending: list[Enrollment] = []
    after: str | None = None
    while True:
        page = await store.enrollments.page(list(EnrollmentStatus), after_id=after, limit=PAGE)
        pending += page
        if len(page) < PAGE:
            break
        after = page[-1].id
    findings: dict[str, list[Finding]] = {}
    for round_ in range(rounds):
        results = await asyncio.gather(*(examine(enrollment) for enrollment in pending))
        findings = {enrollment_id: found for enrollment_id, found in results if found}
        if not findings or round_ == rounds - 1:
            break
        await asyncio.sleep(pause)
        fresh = [await store.enrollments.get(enrollment_id, with_log=False) for enrollment_id in sorted(findings)]
        pending = [enrollment for enrollment in fresh if enrollment is not None]
    for found in findings.values():
        if all(finding.problem is Problem.DISAGREES for finding in found):
            report.disagreements += 1
        else:
            report.wedged += 1
        for finding in found:
            log(f"agreement: {finding.problem} {finding.message}")
    return findings
