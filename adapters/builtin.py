"""The built-in adapters by short name, as ``ENROLLMENT_ADAPTERS`` lists them."""

from __future__ import annotations

from collections.abc import Iterable

from adapters.director import AdapterClass, EnrollmentDirector
from adapters.licensed import LicensedAdapter

BUILTIN_ADAPTERS: dict[str, AdapterClass] = {
    "licensed": LicensedAdapter,
}


def director_from_names(names: Iterable[str]) -> EnrollmentDirector:
    """A director with the named built-in adapters in that order (unknown names are a clear error)."""
    director = EnrollmentDirector()
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        try:
            director.register_adapter(BUILTIN_ADAPTERS[name])
        except KeyError:
            raise ValueError(
                f"unknown enrollment adapter {name!r}; known: {', '.join(sorted(BUILTIN_ADAPTERS))}"
            ) from None
    return director
