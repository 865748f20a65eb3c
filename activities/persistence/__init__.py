"""Persistence of enrollments: engines, tables and the store (one repository per aggregate).

Migrations: :mod:`activities.persistence.migrate` (it loads Alembic, which the client library never needs).
"""

from activities.persistence.billing import BillingRepository, MakeOrder
from activities.persistence.database import (
    create_engine,
    is_sqlite,
    normalize_database_url,
    redacted,
    session_factory,
)
from activities.persistence.enrollments import CREATED_EVENT, EnrollmentRepository
from activities.persistence.errors import (
    ConflictError,
    DatabaseNotFound,
    EnrollmentConflict,
    EnrollmentNotFound,
    EnrollmentTerminated,
    NotFoundError,
    OrderNotFound,
    PersistenceError,
    ProductNotFound,
    UsageConflict,
    UsageRefused,
    WebhookNotFound,
)
from activities.persistence.events import EventRepository
from activities.persistence.models import Base
from activities.persistence.numbers import enrollment_number, normalize_number, order_number
from activities.persistence.products import ProductRepository
from activities.persistence.rows import order_id_for
from activities.persistence.store import Store, open_store
from activities.persistence.transactions import Transactions
from activities.persistence.usage import UsageRepository
from activities.persistence.webhooks import WebhookRepository

__all__ = [
    "CREATED_EVENT",
    "Base",
    "BillingRepository",
    "ConflictError",
    "DatabaseNotFound",
    "EnrollmentConflict",
    "EnrollmentNotFound",
    "EnrollmentRepository",
    "EnrollmentTerminated",
    "EventRepository",
    "MakeOrder",
    "NotFoundError",
    "OrderNotFound",
    "PersistenceError",
    "ProductNotFound",
    "ProductRepository",
    "Store",
    "Transactions",
    "UsageConflict",
    "UsageRefused",
    "UsageRepository",
    "WebhookNotFound",
    "WebhookRepository",
    "create_engine",
    "enrollment_number",
    "is_sqlite",
    "normalize_database_url",
    "normalize_number",
    "open_store",
    "order_id_for",
    "order_number",
    "redacted",
    "session_factory",
]
