"""What the client checks in the database before it starts an enrollment's workflow.

A create the registration would refuse is refused here first, with the same error types, so it starts no
workflow: an unknown product (``ProductNotFound``), a product that is not a plan product
(``NotAPlanProduct``), an invalid plan (``InvalidPlan``), an id taken by other terms
(``EnrollmentConflict``), a start it cannot have (``InvalidStart``). A TERMINATED enrollment is final:
creating it again is refused too (``EnrollmentConflict``), rather than quietly returning an enrollment that
grants nothing.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError

from activities.persistence import EnrollmentConflict, Store
from adapters.domain import EnrollmentStatus, EnrollmentTerms
from adapters.lifecycle import ErrorType
from adapters.pricing import price_problem
from adapters.rules import plan_product_problem, start_problem, stored_plan_problem
from starter.client.errors import EnrollmentCommandRejected


def terminated_rejection(enrollment_id: str) -> EnrollmentCommandRejected:
    return EnrollmentCommandRejected(
        f"enrollment {enrollment_id!r} exists and is TERMINATED, which is final: it is not created again; "
        "create the new enrollment under another id",
        ErrorType.ENROLLMENT_CONFLICT,
    )


async def existing_status(
    store: Store,
    enrollment_id: str | None,
    terms: EnrollmentTerms,
    *,
    start: datetime | None,
    now: datetime,
    backdate: bool,
) -> EnrollmentStatus | None:
    """The status of the enrollment ``enrollment_id`` when it exists with ``terms``, None when it is new.

    Raises :class:`EnrollmentCommandRejected` for everything the registration would refuse (see the module),
    a new enrollment's start included (:func:`adapters.rules.start_problem`, seen from the caller's clock).
    """
    status = None
    if enrollment_id is not None:
        try:
            status = await store.enrollments.existing_status(enrollment_id, terms)
        except EnrollmentConflict as error:
            raise EnrollmentCommandRejected(str(error), ErrorType.ENROLLMENT_CONFLICT) from None
    try:
        product = await store.products.get(terms.product_id)
    except ValidationError as error:
        error_type, message = stored_plan_problem(terms.product_id, error)
        raise EnrollmentCommandRejected(message, error_type) from None
    problem = plan_product_problem(terms.product_id, product)
    if problem is not None:
        error_type, message = problem
        raise EnrollmentCommandRejected(message, error_type)
    no_price = None if product is None else price_problem(product, terms.currency_code)
    if no_price is not None:
        raise EnrollmentCommandRejected(no_price, ErrorType.NO_PRICE)
    if status is None and product is not None and product.plan is not None:
        refusal = start_problem(
            product.plan,
            start or now,
            terms.timezone,
            now,
            backdate=backdate,
            activate_on_payment=terms.activate_on_payment,
        )
        if refusal is not None:
            raise EnrollmentCommandRejected(refusal, ErrorType.INVALID_START)
    return status
