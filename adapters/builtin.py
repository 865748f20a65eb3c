"""The built-in adapters by short name, as ``ENROLLMENT_ADAPTERS`` lists them.

``licensed``, ``metered`` and ``trial_grace``; ``trial_grace:<days>`` is the trial-with-grace adapter with
a grace of ``<days>`` days instead of 7.
"""

from __future__ import annotations

from collections.abc import Iterable

from adapters.director import AdapterClass, EnrollmentDirector
from adapters.licensed import LicensedAdapter
from adapters.metered import MeteredAdapter
from adapters.trial_grace import TrialGraceAdapter, trial_grace_adapter

BUILTIN_ADAPTERS: dict[str, AdapterClass] = {
    "licensed": LicensedAdapter,
    "metered": MeteredAdapter,
    "trial_grace": TrialGraceAdapter,
}

_PARAMETERIZED = "trial_grace"


def builtin_adapter(name: str) -> AdapterClass:
    """The built-in adapter named ``name`` (``trial_grace:14`` included); unknown names are a clear error."""
    base, separator, argument = name.strip().partition(":")
    if not separator:
        try:
            return BUILTIN_ADAPTERS[base]
        except KeyError:
            raise ValueError(
                f"unknown enrollment adapter {name.strip()!r}; known: {', '.join(sorted(BUILTIN_ADAPTERS))} "
                f"({_PARAMETERIZED}:<days> sets the grace period)"
            ) from None
    if base != _PARAMETERIZED:
        raise ValueError(f"enrollment adapter {base!r} takes no parameter, got {name.strip()!r}")
    try:
        days = int(argument)
    except ValueError:
        raise ValueError(f"{_PARAMETERIZED}:<days> needs a whole number of days, got {name.strip()!r}") from None
    return trial_grace_adapter(days)


def director_from_names(names: Iterable[str]) -> EnrollmentDirector:
    """A director with the named built-in adapters in that order (unknown names are a clear error)."""
    director = EnrollmentDirector()
    for raw in names:
        if raw.strip():
            director.register_adapter(builtin_adapter(raw))
    return director
