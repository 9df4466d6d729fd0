"""Times as the ticker shows them: the wall clock the feed wrote (the count's own UTC offset),
with the day added once the time is past the night.

The night begins with the exit poll, else with the earliest result seen. A time within 24
hours of its start is shown bare (``04:12``: no such time is ambiguous within a day); a later
one carries its day (``Sat 17:50``), so that a seat declared the day after the night does
not pass for one declared in it. The live page says times the same way.
"""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = ["NightClock"]

NIGHT = timedelta(hours=24)


def _parse(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class NightClock:
    """When the night began, and how each time reads against it."""

    def __init__(self) -> None:
        self.start: datetime | None = None

    def begin(self, text: object) -> None:
        """Take a time (ISO 8601) as a possible start: the earliest wins."""
        moment = _parse(text)
        if moment is None or moment.tzinfo is None:
            return
        if self.start is None or moment < self.start:
            self.start = moment

    def format(self, text: object) -> str:
        """``17:50`` within the night, ``Sat 17:50`` outside it (or with no night begun);
        a time without a UTC offset as it is; "" if no time."""
        moment = _parse(text)
        if moment is None:
            return ""
        if moment.tzinfo is None:
            return moment.strftime("%H:%M")
        if self.start is not None and self.start <= moment < self.start + NIGHT:
            return moment.strftime("%H:%M")
        return moment.strftime("%a %H:%M")
