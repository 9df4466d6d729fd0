"""What the server costs, and what the machine as a whole is doing, from psutil.

The load generator samples the server it started together with every process below it (such
as ``--workers``), and the machine's CPU time, to tell the run's share from everything else's.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil


@dataclass(frozen=True, slots=True)
class Usage:
    """Resident memory and CPU seconds (user + system) summed over a process tree."""

    rss_kb: int
    cpu_s: float
    processes: int


def usage(pid: int) -> Usage | None:
    """The tree's usage now, or None when ``pid`` is gone."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    rss, cpu_s, count = 0, 0.0, 0
    for process in tree:
        try:
            with process.oneshot():
                memory = process.memory_info()
                times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # ended between the listing and the reading
        rss += memory.rss
        cpu_s += times.user + times.system
        count += 1
    return Usage(rss_kb=rss // 1024, cpu_s=cpu_s, processes=count)


def machine_busy() -> tuple[float, float]:
    """CPU seconds this machine has spent busy (all cores, anything but idle and iowait),
    and of those, the seconds in interrupts and softirqs (where loopback TCP is carried;
    with tick-based accounting the same ticks are also charged to the interrupted process)."""
    times = psutil.cpu_times()
    # Guest time is already counted in user.
    busy = times.user + times.nice + times.system + times.irq + times.softirq + times.steal
    return busy, times.irq + times.softirq
