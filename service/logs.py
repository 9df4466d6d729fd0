"""Logging set-up: one format, and no credential ever written to a log."""

from __future__ import annotations

import logging
import re

_TOKEN_IN_QUERY = re.compile(r"((?:^|[?&])token=)[^&\s\"']+")


class RedactTokens(logging.Filter):
    """Replaces ``token=...`` in logged URLs (uvicorn logs paths with their query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "token=" in record.msg:
            record.msg = _TOKEN_IN_QUERY.sub(r"\1***", record.msg)
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_QUERY.sub(r"\1***", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def redact_tokens() -> None:
    """Install the filter on the loggers that write request paths; safe to call again."""
    for name in ("uvicorn.error", "uvicorn.access", "seatcast"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
