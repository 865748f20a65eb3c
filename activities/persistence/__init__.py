"""Persistence of enrollments: engines, tables, migrations and the repository the activities call."""

from activities.persistence.database import create_engine, is_sqlite, normalize_database_url, session_factory
from activities.persistence.errors import (
    ConflictError,
    EnrollmentConflict,
    EnrollmentNotFound,
    NotFoundError,
    OrderNotFound,
    PersistenceError,
    ProductNotFound,
    UsageConflict,
    UsageRefused,
)
from activities.persistence.migrate import downgrade_async, upgrade, upgrade_async
from activities.persistence.models import Base
from activities.persistence.numbers import enrollment_number, normalize_number, order_number
from activities.persistence.repository import CREATED_EVENT, EnrollmentRepository, order_id_for

__all__ = [
    "CREATED_EVENT",
    "Base",
    "ConflictError",
    "EnrollmentConflict",
    "EnrollmentNotFound",
    "EnrollmentRepository",
    "NotFoundError",
    "OrderNotFound",
    "PersistenceError",
    "ProductNotFound",
    "UsageConflict",
    "UsageRefused",
    "create_engine",
    "downgrade_async",
    "enrollment_number",
    "is_sqlite",
    "normalize_database_url",
    "normalize_number",
    "order_id_for",
    "order_number",
    "session_factory",
    "upgrade",
    "upgrade_async",
]
