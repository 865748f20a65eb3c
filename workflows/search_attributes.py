"""Typed search attributes operators filter enrollments by in the Temporal Web UI."""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from adapters.lifecycle import HEALTH_ATTRIBUTE, STATUS_ATTRIBUTE

ENROLLMENT_STATUS = SearchAttributeKey.for_keyword(STATUS_ATTRIBUTE)
ENROLLMENT_PRODUCT_ID = SearchAttributeKey.for_keyword("EnrollmentProductId")
ENROLLMENT_USER_ID = SearchAttributeKey.for_keyword("EnrollmentUserId")
ENROLLMENT_NEXT_PERIOD_AT = SearchAttributeKey.for_datetime("EnrollmentNextPeriodAt")
ENROLLMENT_HEALTH = SearchAttributeKey.for_keyword(HEALTH_ATTRIBUTE)

ALL_SEARCH_ATTRIBUTES = (
    ENROLLMENT_STATUS,
    ENROLLMENT_PRODUCT_ID,
    ENROLLMENT_USER_ID,
    ENROLLMENT_NEXT_PERIOD_AT,
    ENROLLMENT_HEALTH,
)
