"""Where the command line finds its database and Temporal server, the same way from any directory.

Each setting comes from the first of: its global option (``--database-url``, ``--address``, ``--namespace``),
its environment variable (``DATABASE_URL``, ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``), the dev stack's
announcement (``.enrollments/dev-stack.json`` in the current directory or a parent: what ``enrollments dev``
printed when it started, :mod:`starter.devtools.state`), the default. A read never creates a database: when
the SQLite file is missing, the error says where the command looked and how to point it elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from activities.persistence import DatabaseNotFound
from starter.cli.errors import EXIT_RUNTIME, CliError
from starter.connection import Settings
from starter.devtools.state import DEFAULT_STATE_DIR, STATE_FILE, find_announcement

DEFAULT_DATABASE_FILE = "enrollments.db"


@dataclass(frozen=True)
class Location:
    """The database and Temporal server a command uses, and how the database was found."""

    database_url: str
    found_by: str
    hint: str
    temporal_address: str
    temporal_namespace: str

    def missing(self, error: DatabaseNotFound) -> CliError:
        """The one-line error for a database file that does not exist."""
        return CliError(f"no database at {error.path} ({self.found_by}); {self.hint}", EXIT_RUNTIME)


def locate(
    settings: Settings,
    *,
    database_option: str | None,
    address_option: str | None,
    namespace_option: str | None,
    directory: Path,
) -> Location:
    """Resolve the database URL, Temporal address and namespace for a command run in ``directory``."""
    from_env = settings.model_fields_set
    found = find_announcement(directory.resolve())
    address = address_option or (settings.temporal_address if "temporal_address" in from_env else None)
    namespace = namespace_option or (settings.temporal_namespace if "temporal_namespace" in from_env else None)
    if found is not None:
        address = address or found[1].temporal_address
        namespace = namespace or found[1].namespace
    fallback = Settings.model_fields
    address = address or str(fallback["temporal_address"].default)
    namespace = namespace or str(fallback["temporal_namespace"].default)
    create = "check the path, or create and migrate it with `enrollments db upgrade`"
    if database_option is not None:
        url, found_by, hint = database_option, "from --database-url", create
    elif "database_url" in from_env:
        url, found_by, hint = settings.database_url, "from DATABASE_URL", create
    elif found is not None:
        url, found_by = found[1].database_url, f"announced by the dev stack in {found[0]}"
        hint = "start `enrollments dev` there again, or point --database-url or DATABASE_URL at a database"
    else:
        path = (directory / DEFAULT_STATE_DIR / DEFAULT_DATABASE_FILE).resolve()
        url = f"sqlite+aiosqlite:///{path}"
        found_by = (
            f"the default: no --database-url, no DATABASE_URL, no dev stack ({DEFAULT_STATE_DIR / STATE_FILE}) "
            f"in {directory.resolve()} or its parents"
        )
        hint = "point --database-url or DATABASE_URL at a database, or run this where `enrollments dev` runs"
    return Location(url, found_by, hint, address, namespace)
