"""How the enrollment workflow receives its commands: one decoder and one handler shape for every message.

The SDK would bind a message's payloads to a handler's typed parameters, so two payloads, a binary payload
or an object of another shape would fail every workflow task of the enrollment from then on. Here every
command handler takes whatever arrived (``*payloads``) and :func:`decode_command` turns it into the
command's model or says why not: a malformed signal is dropped with a warning naming the message, a
malformed update is rejected with that message, and the enrollment goes on.

:func:`command_signal` and :func:`command_update` declare a command's handlers from
:data:`adapters.lifecycle.COMMAND_MESSAGES`; the workflow class lists one line per message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from pydantic import ValidationError
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from adapters.domain import DomainModel
    from adapters.lifecycle import COMMAND_MESSAGES, Command, EnrollmentView
    from adapters.validation import describe_validation_error

C = TypeVar("C", bound=DomainModel)


class MalformedMessage(ValueError):
    """A message whose payloads are not its command; the text names the message and the problem."""


def _kind_of(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return "binary data"
    return f"a JSON {type(value).__name__}" if value is not None else "null"


def decode_command(message: str, model: type[C], payloads: Sequence[Any]) -> C:
    """The command ``model`` from a message's payloads: none (all defaults) or one JSON object."""
    if len(payloads) > 1:
        raise MalformedMessage(f"{message}: takes one argument (a JSON object), got {len(payloads)}")
    raw = payloads[0] if payloads else {}
    if not isinstance(raw, dict):
        raise MalformedMessage(f"{message}: expects a JSON object, got {_kind_of(raw)}")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise MalformedMessage(f"{message}: {describe_validation_error(error)}") from None


class CommandReceiver(Protocol):
    """What a workflow implements to take commands through the handlers declared here."""

    def receive_signal(self, message: str, model: type[Command], payloads: Sequence[Any]) -> None: ...

    def validate_update(self, message: str, model: type[Command], payloads: Sequence[Any]) -> None: ...

    async def run_update(self, message: str, model: type[Command], payloads: Sequence[Any]) -> EnrollmentView: ...


def command_signal(model: type[Command]) -> Callable[..., None]:
    """The signal handler of ``model``'s command (name and description from the command table)."""
    messages = COMMAND_MESSAGES[model]
    name = messages.signal
    if name is None:
        raise ValueError(f"{model.__name__} has no signal")

    def handler(self: CommandReceiver, *payloads: Any) -> None:
        self.receive_signal(name, model, payloads)

    return workflow.signal(name=name, description=messages.signal_description)(handler)


def command_update(model: type[Command]) -> Any:
    """The update handler, with its validator, of ``model``'s command (name and description from the table)."""
    messages = COMMAND_MESSAGES[model]
    name = messages.update
    if name is None:
        raise ValueError(f"{model.__name__} has no update")

    async def handler(self: CommandReceiver, *payloads: Any) -> EnrollmentView:
        return await self.run_update(name, model, payloads)

    def validator(self: CommandReceiver, *payloads: Any) -> None:
        self.validate_update(name, model, payloads)

    update = workflow.update(name=name, description=messages.update_description)(handler)
    update.validator(validator)
    return update
