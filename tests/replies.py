"""redis-py's replies typed as the suite's clients receive them.

redis-py types a reply the same for every client: ``bytes | str`` whatever ``decode_responses``
says, and a stream range as possibly nil, with nil IDs and fields. The suite's clients do not
decode and Redis answers a range with a list, so these say what arrives. They only cast.
"""

from __future__ import annotations

from typing import cast

Entry = tuple[bytes, dict[bytes, bytes]]


def entries(reply: object) -> list[Entry]:
    """An ``XRANGE`` or ``XREVRANGE`` reply: (ID, fields) pairs."""
    return cast(list[Entry], reply)


def as_bytes(reply: object) -> bytes:
    """A bulk-string reply, such as the entry ID that ``XADD`` answers."""
    return cast(bytes, reply)
