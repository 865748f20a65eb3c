"""The EnrollmentDirector: an ordered list of adapters; the first that is activated for a plan wins."""

from __future__ import annotations

from collections.abc import Iterable

from adapters.base import EnrollmentAdapter, EnrollmentContext
from adapters.domain import ProductPlan

AdapterClass = type[EnrollmentAdapter]

_ADAPTERS_BY_KEY: dict[str, AdapterClass] = {}
"""Every adapter any director has registered, by key: the workflow's query finds its adapter here."""


class NoAdapterForPlanError(LookupError):
    """No registered adapter is activated for the plan (the message names the plan)."""

    def __init__(self, plan: ProductPlan, registered: list[str]) -> None:
        super().__init__(
            f"no enrollment adapter is activated for plan {plan.model_dump_json()} "
            f"(registered: {', '.join(registered) or 'none'})"
        )
        self.plan = plan


class UnknownAdapterError(LookupError):
    """An adapter key that no director has registered."""


def _remember(adapter: AdapterClass) -> None:
    known = _ADAPTERS_BY_KEY.get(adapter.key)
    if known is not None and known is not adapter:
        raise ValueError(f"adapter key {adapter.key!r} is already used by {known.__module__}.{known.__qualname__}")
    _ADAPTERS_BY_KEY[adapter.key] = adapter


def adapter_for_key(key: str) -> AdapterClass:
    """The adapter class registered under ``key`` (raises :class:`UnknownAdapterError`)."""
    try:
        return _ADAPTERS_BY_KEY[key]
    except KeyError:
        raise UnknownAdapterError(f"no enrollment adapter with key {key!r} is registered") from None


class EnrollmentDirector:
    """Resolves the adapter for a plan: the first registered adapter whose ``is_activated_for`` is true."""

    def __init__(self, adapters: Iterable[AdapterClass] = ()) -> None:
        self._adapters: list[AdapterClass] = []
        for adapter in adapters:
            self.register_adapter(adapter)

    def register_adapter(self, adapter: AdapterClass) -> None:
        """Append ``adapter`` (registration order is resolution order); re-registering is a no-op."""
        if not (isinstance(adapter, type) and issubclass(adapter, EnrollmentAdapter)):
            raise TypeError(f"{adapter!r} is not an EnrollmentAdapter subclass")
        _remember(adapter)
        if adapter not in self._adapters:
            self._adapters.append(adapter)

    @property
    def adapters(self) -> list[AdapterClass]:
        return list(self._adapters)

    def resolve(self, plan: ProductPlan) -> AdapterClass:
        """The adapter for ``plan`` (raises :class:`NoAdapterForPlanError` naming the plan)."""
        for adapter in self._adapters:
            if adapter.is_activated_for(plan):
                return adapter
        raise NoAdapterForPlanError(plan, [adapter.key for adapter in self._adapters])

    def actions(self, context: EnrollmentContext, adapter_key: str | None = None) -> EnrollmentAdapter:
        """The per-enrollment actions: by the enrollment's recorded adapter key, else by its plan."""
        adapter = adapter_for_key(adapter_key) if adapter_key else self.resolve(context.plan)
        return adapter(context)
