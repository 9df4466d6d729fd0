"""Logging set-up: one format, and no credential ever written to a log."""

from __future__ import annotations

import logging
import re

_TOKEN_IN_QUERY = re.compile(r"((?:^|[?&])token=)[^&\s\"']+")
_BEARER = re.compile(r"(bearer\s+)\S+", re.IGNORECASE)


def _redact(text: str) -> str:
    return _BEARER.sub(r"\1***", _TOKEN_IN_QUERY.sub(r"\1***", text))


class RedactTokens(logging.Filter):
    """Replaces ``token=...`` in logged URLs (uvicorn logs paths with their query string)
    and ``Bearer ...`` (the websockets library logs request headers at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _redact(record.msg)
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(
                _redact(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def redact_tokens() -> None:
    """Install the filter on the loggers that write request paths; safe to call again."""
    for name in ("uvicorn.error", "uvicorn.access", "seatcast", "seatcast.ws"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
