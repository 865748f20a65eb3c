"""Short, human enrollment and order numbers derived from ids (``E-7KQ2M9XA``, ``O-3F0BZ1C8``).

A number is a hash of the id in Crockford base32 (no I, L, O, U: nothing to misread), so a retried
create computes the same number. Numbers are unique in the database; on the rare collision the
repository asks for the next candidate: the first few are salted 8-character codes, later ones grow
longer, so the sequence always ends. Once stored, a number never changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

CROCKFORD_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ENROLLMENT_PREFIX = "E-"
ORDER_PREFIX = "O-"
NUMBER_LENGTH = 8
MAX_ATTEMPTS = 12
_SALTED_AT_BASE_LENGTH = 4
_DECODE_ALIASES = str.maketrans({"I": "1", "L": "1", "O": "0"})


def _crockford(digest: bytes, length: int) -> str:
    value = int.from_bytes(digest, "big")
    chars = []
    for _ in range(length):
        value, index = divmod(value, 32)
        chars.append(CROCKFORD_ALPHABET[index])
    return "".join(chars)


def candidate_number(prefix: str, entity_id: str, attempt: int = 0) -> str:
    """The ``attempt``-th number for ``entity_id``: attempt 0 is the plain hash, later ones are salted."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    seed = entity_id if attempt == 0 else f"{entity_id}#{attempt}"
    extra = max(0, attempt - _SALTED_AT_BASE_LENGTH + 1)
    return prefix + _crockford(hashlib.sha256(seed.encode()).digest(), NUMBER_LENGTH + extra)


def candidate_numbers(prefix: str, entity_id: str) -> Iterator[str]:
    """All candidates for ``entity_id`` in the order the repository tries them."""
    for attempt in range(MAX_ATTEMPTS):
        yield candidate_number(prefix, entity_id, attempt)


def enrollment_number(enrollment_id: str, attempt: int = 0) -> str:
    """The ``attempt``-th enrollment number candidate for ``enrollment_id`` (``E-`` + Crockford base32)."""
    return candidate_number(ENROLLMENT_PREFIX, enrollment_id, attempt)


def order_number(order_id: str, attempt: int = 0) -> str:
    """The ``attempt``-th order number candidate for ``order_id`` (``O-`` + Crockford base32)."""
    return candidate_number(ORDER_PREFIX, order_id, attempt)


def normalize_number(text: str) -> str:
    """A number as typed by a person in its canonical form: upper case, no spaces, I/L→1 and O→0.

    ``e-7kq2-m9xa`` becomes ``E-7KQ2M9XA``; raises ``ValueError`` when it cannot be a number.
    """
    cleaned = "".join(text.split()).upper()
    prefix, separator, code = cleaned.partition("-")
    if not separator or f"{prefix}-" not in (ENROLLMENT_PREFIX, ORDER_PREFIX):
        raise ValueError(f"{text!r} is not an enrollment (E-…) or order (O-…) number")
    code = code.replace("-", "").translate(_DECODE_ALIASES)
    if len(code) < NUMBER_LENGTH or any(char not in CROCKFORD_ALPHABET for char in code):
        raise ValueError(f"{text!r} is not an enrollment (E-…) or order (O-…) number")
    return f"{prefix}-{code}"
