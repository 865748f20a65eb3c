"""Refuse oversized input before it reaches Temporal, with an error that says which field is too big.

The Temporal server refuses any single payload over 2 MB (``limit.blobSize.error``) and the SDK warns
from 512 KiB. An enrollment's terms are copied into its workflow input, the registration activity, every
state query answer and the state continue-as-new carries over (together with its periods and orders), so
they must stay far below that: :data:`MAX_TERMS_BYTES`. The domain models already cap the configuration
(100 entries of at most 4,096 characters); this check also covers ``meta``, addresses and provider
contexts, which have no per-field cap.
"""

from __future__ import annotations

import json

from pydantic import BaseModel

MAX_TERMS_BYTES = 256 * 1024
"""Largest serialized enrollment terms accepted (a quarter of the SDK's warning size, an eighth of the
server's hard limit): room for the state that travels with them."""


class PayloadTooLarge(ValueError):
    """Input that would make a Temporal payload too large; the message names the largest fields."""

    def __init__(self, what: str, size: int, limit: int, largest: list[tuple[str, int]]) -> None:
        fields = ", ".join(f"{name} ({_size(count)})" for name, count in largest)
        super().__init__(
            f"{what} are {_size(size)} when serialized; at most {_size(limit)} are accepted "
            f"(Temporal refuses payloads over 2 MB)" + (f"; largest fields: {fields}" if fields else "")
        )
        self.size = size
        self.limit = limit


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.1f} MiB"
    if count >= 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count} bytes"


def ensure_fits(what: str, model: BaseModel, limit: int = MAX_TERMS_BYTES) -> int:
    """The serialized size of ``model``; raises :class:`PayloadTooLarge` when it exceeds ``limit``."""
    size = len(model.model_dump_json())
    if size <= limit:
        return size
    dumped = model.model_dump(mode="json")
    sizes = [(name, len(json.dumps(value, separators=(",", ":")))) for name, value in dumped.items()]
    largest = sorted((item for item in sizes if item[1] >= 1024), key=lambda item: -item[1])[:3]
    raise PayloadTooLarge(what, size, limit, largest)
