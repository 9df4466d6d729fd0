"""An exit poll embargoed until its publication time: who may see it, and when it lifts."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

EXIT_POLL = "exit_poll"


class Embargo:
    """The national exit poll's embargo, taken up from the national state after each change."""

    def __init__(
        self,
        wall_clock: Callable[[], float] = time.time,
        on_hold: Callable[[float], None] | None = None,
    ) -> None:
        self.wall_clock = wall_clock
        self.on_hold = on_hold or (lambda until: None)
        """Called with the lift time whenever an embargo is taken up: the caller then calls
        ``Hub.lift_embargo`` at that time."""
        self.until: float | None = None
        """When the current exit poll's embargo lifts (epoch seconds), if it has one."""
        self.seen = False
        """An embargo held at some point: the national history holds what some may not see."""

    def active(self) -> bool:
        return self.until is not None and self.wall_clock() < self.until

    def take_up(self, national: Mapping[str, Any]) -> bool:
        """Adopt the embargo of the national state's exit poll; True while it holds."""
        self.until = _timestamp(national.get(EXIT_POLL, {}).get("embargo_until"))
        if self.until is None or not self.active():
            return False
        self.seen = True
        self.on_hold(self.until)
        return True

    def reset(self) -> None:
        self.until = None
        self.seen = False


def without_exit_poll(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if key != EXIT_POLL}


def _timestamp(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
