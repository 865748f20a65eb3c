"""Changes of plan, quantity and terms from a service: make one, preview one, see the upcoming order.

:class:`ChangesMixin` is part of :class:`starter.client.EnrollmentsClient`. A preview is computed from the
database by the code the change activity runs (:meth:`activities.persistence.changes.ChangeRepository.decide`),
so it shows exactly the periods and order the change makes at that instant.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import Field

from activities.persistence import EnrollmentNotFound as StoredEnrollmentNotFound
from activities.persistence import ProductNotFound as StoredProductNotFound
from activities.persistence import Store
from adapters.changes import ChangeOutcome, ChangeRefused, UpcomingOrder, upcoming_order
from adapters.domain import DomainModel
from adapters.lifecycle import ChangeCommand, ChangeProration, ChangeWhen, EnrollmentView, TermsChange
from starter.client.errors import EnrollmentCommandRejected, EnrollmentNotFound
from starter.client.references import enrollment_id_of

if TYPE_CHECKING:
    from adapters.lifecycle import Command


class MigrationSample(DomainModel):
    """One enrollment of a migration: its next order's total on its plan version and on the latest one."""

    enrollment_id: str
    plan_version: int | None
    total_before: int | None
    total_after: int | None


class ProductMigration(DomainModel):
    """Enrollments moved (or, in a dry run, to move) to a product's latest plan version."""

    product_id: str
    version: int
    enrollments: int = Field(description="open enrollments on an earlier version")
    migrated: list[str] = Field(default_factory=list)
    refused: dict[str, str] = Field(default_factory=dict, description="enrollment id: why its change was refused")
    samples: list[MigrationSample] = Field(default_factory=list)


class ChangesMixin:
    """Changes on the enrollments client (needs its ``database_url`` for previews and checks)."""

    if TYPE_CHECKING:

        def store(self) -> Store: ...

        async def send(self, enrollment_id: str, command: Command) -> EnrollmentView: ...

        async def _enrollment_id(self, reference: str) -> str: ...

        @property
        def _has_database(self) -> bool: ...

    async def change_enrollment(
        self,
        enrollment_id: str,
        *,
        product_id: str | None = None,
        quantity: int | None = None,
        terms: TermsChange | dict[str, Any] | None = None,
        when: ChangeWhen | str = ChangeWhen.NOW,
        proration: ChangeProration | str | None = None,
        cancel: bool = False,
        at: datetime | None = None,
    ) -> EnrollmentView:
        """Change the enrollment's product (plan), quantity or terms, now or at period end; ``cancel`` withdraws
        the change pending at period end. Returns the enrollment after it.

        Now, the change is prorated by default (``proration="none"``: the new price from the next period); at
        period end it is pending until then (a later one replaces it). Invalid input raises pydantic's
        ``ValidationError``; a change the enrollment cannot take raises :class:`EnrollmentCommandRejected`
        naming the problem (``ProductNotFound``, ``NotAPlanProduct``, ``NoPrice``, ``InvalidChange``,
        ``InvalidTransition``), checked in the database before the workflow is asked: nothing is written.
        ``at`` makes it take effect at that past instant (not before the enrollment last changed): a preview at
        the same ``at`` shows exactly what it does.
        """
        command = change_command(product_id, quantity, terms, when, proration, cancel, at)
        if self._has_database and not command.cancel:
            await self._decide(enrollment_id, command, at or datetime.now(UTC))
        return await self.send(enrollment_id, command)

    async def preview_change(
        self,
        enrollment_id: str,
        *,
        product_id: str | None = None,
        quantity: int | None = None,
        terms: TermsChange | dict[str, Any] | None = None,
        when: ChangeWhen | str = ChangeWhen.NOW,
        proration: ChangeProration | str | None = None,
        at: datetime | None = None,
    ) -> ChangeOutcome:
        """What :meth:`change_enrollment` would do at ``at`` (default now): the periods, the order with its lines
        and total, or the change left pending. Nothing is written; refusals raise as the change would."""
        command = change_command(product_id, quantity, terms, when, proration, False, at)
        return await self._decide(enrollment_id, command, at or datetime.now(UTC))

    async def upcoming(self, enrollment_id: str) -> UpcomingOrder:
        """The next period and the order it will bring, on the plan it will be on (a pending change included)."""
        return await stored_upcoming(self.store(), enrollment_id)

    async def migrate_product(
        self, product_id: str, *, when: ChangeWhen | str = ChangeWhen.PERIOD_END, dry_run: bool = False, sample: int = 3
    ) -> ProductMigration:
        """Move the open enrollments on ``product_id`` to its latest plan version, at period end (default) or now
        (without proration: the new price from the next period). A dry run changes nothing and shows how many
        would move and, for ``sample`` of them, their next order's total before and after."""
        store = self.store()
        try:
            behind = await store.products.behind(product_id)
        except StoredProductNotFound:
            raise EnrollmentCommandRejected(f"product {product_id!r} does not exist", "ProductNotFound") from None
        latest = await store.products.get(product_id)
        assert latest is not None
        migration = ProductMigration(product_id=product_id, version=latest.version, enrollments=len(behind))
        for enrollment_id in behind[:sample]:
            enrollment = await store.enrollments.get_recent(enrollment_id)
            current = await store.products.get(product_id, None if enrollment is None else enrollment.plan_version)
            if enrollment is None or current is None:
                continue
            before = upcoming_order(enrollment, current, current).total
            after = upcoming_order(enrollment, latest, latest).total
            migration.samples.append(
                MigrationSample(
                    enrollment_id=enrollment_id,
                    plan_version=enrollment.plan_version,
                    total_before=before,
                    total_after=after,
                )
            )
        if dry_run:
            return migration
        moment = ChangeWhen(when)
        proration = ChangeProration.NONE if moment is ChangeWhen.NOW else None
        for enrollment_id in behind:
            try:
                await self.change_enrollment(enrollment_id, product_id=product_id, when=moment, proration=proration)
            except EnrollmentCommandRejected as refused:
                migration.refused[enrollment_id] = str(refused)
                continue
            migration.migrated.append(enrollment_id)
        return migration

    async def _decide(self, enrollment_id: str, command: ChangeCommand, at: datetime) -> ChangeOutcome:
        return await stored_preview(self.store(), enrollment_id, command, at)


async def stored_preview(store: Store, enrollment_id: str, command: ChangeCommand, at: datetime) -> ChangeOutcome:
    """What ``command`` would do at ``at`` to the enrollment ``enrollment_id`` (or number), from the database alone."""
    identifier = await enrollment_id_of(store, enrollment_id)
    try:
        return await store.changes.decide(identifier, command, at)
    except StoredEnrollmentNotFound:
        raise EnrollmentNotFound(enrollment_id) from None
    except ChangeRefused as refused:
        raise EnrollmentCommandRejected(refused.message, refused.error_type) from None


async def stored_upcoming(store: Store, enrollment_id: str) -> UpcomingOrder:
    """The next period and its order of the enrollment ``enrollment_id`` (or number), from the database alone."""
    enrollment = await store.enrollments.get_recent(await enrollment_id_of(store, enrollment_id))
    if enrollment is None:
        raise EnrollmentNotFound(enrollment_id)
    product = await store.products.get(enrollment.product_id, enrollment.plan_version)
    pending = enrollment.pending_change
    next_product = product
    if pending is not None:
        next_product = await store.products.get(pending.product_id, pending.plan_version)
    if product is None or next_product is None:
        raise EnrollmentCommandRejected(f"enrollment {enrollment_id!r}: its product is gone", "ProductNotFound")
    return upcoming_order(enrollment, product, next_product)


def change_command(
    product_id: str | None,
    quantity: int | None,
    terms: TermsChange | dict[str, Any] | None,
    when: ChangeWhen | str,
    proration: ChangeProration | str | None,
    cancel: bool,
    at: datetime | None = None,
) -> ChangeCommand:
    """The change command of these arguments (pydantic's ``ValidationError`` names what is wrong)."""
    return ChangeCommand.model_validate(
        {
            "product_id": product_id,
            "quantity": quantity,
            "terms": terms,
            "when": when,
            "proration": proration,
            "cancel": cancel,
            "at": at,
        }
    )
