"""The server's memory and CPU time from /proc, and this process's open-files limit.

Linux only: the load generator samples the server it started (and any processes that server
started, such as workers) by reading ``/proc/<pid>/status`` and ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import ipaddress
import os
import resource
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class Usage:
    """Resident memory and CPU seconds (user + system) summed over a process tree."""

    rss_kb: int
    cpu_s: float
    processes: int


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    return text[text.rfind(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, found by walking parent IDs in /proc."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def _rss_kb(pid: int) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def usage(pid: int) -> Usage | None:
    """The tree's usage now, or None when ``pid`` is gone."""
    if _stat_fields(pid) is None:
        return None
    rss, ticks, count = 0, 0, 0
    for member in descendants(pid):
        fields = _stat_fields(member)
        if fields is None:
            continue
        # Fields 14 and 15 of stat (utime, stime), counted from the state field (3).
        ticks += int(fields[11]) + int(fields[12])
        rss += _rss_kb(member)
        count += 1
    return Usage(rss_kb=rss, cpu_s=ticks / CLOCK_TICKS, processes=count)


def machine_busy() -> tuple[float, float]:
    """CPU seconds this machine has spent busy (all cores, anything but idle and iowait),
    and of those, the seconds in interrupts and softirqs (where loopback TCP is carried;
    with tick-based accounting the same ticks are also charged to the interrupted process)."""
    try:
        with open(PROC / "stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    # user nice system idle iowait irq softirq steal (guest time is already in user).
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / CLOCK_TICKS, (fields[5] + fields[6]) / CLOCK_TICKS


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def require_loopback(url: str, what: str) -> None:
    """Raise ValueError unless ``url`` points at this machine (a loopback host or a socket)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return
    host = parts.hostname or ""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"{what} {url!r} is not on a loopback address: "
            "the load generator only runs against this machine (127.0.0.1)"
        )
