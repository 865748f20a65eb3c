"""Typed search attributes operators filter enrollments by in the Temporal Web UI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

ENROLLMENT_STATUS = SearchAttributeKey.for_keyword("EnrollmentStatus")
ENROLLMENT_PRODUCT_ID = SearchAttributeKey.for_keyword("EnrollmentProductId")
ENROLLMENT_USER_ID = SearchAttributeKey.for_keyword("EnrollmentUserId")
ENROLLMENT_NEXT_PERIOD_AT = SearchAttributeKey.for_datetime("EnrollmentNextPeriodAt")

ALL_SEARCH_ATTRIBUTES = (ENROLLMENT_STATUS, ENROLLMENT_PRODUCT_ID, ENROLLMENT_USER_ID, ENROLLMENT_NEXT_PERIOD_AT)
