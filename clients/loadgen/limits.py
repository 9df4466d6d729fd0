"""What the load generator may do on this machine: how many files it may open, and where it may
send load (loopback only)."""

from __future__ import annotations

import ipaddress
import resource
from urllib.parse import urlsplit


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
