"""HTTP caching of the REST and graphics answers: entity tags, Cache-Control and 304.

A channel's answer changes only when the channel does, so its tag is the run of the stream
and the seq of the channel's last change, ``"<epoch>:<seq>"``. An answer that withholds
embargoed data is tagged apart (``"<epoch>:<seq>:withheld"``): when the embargo lifts, the
answer changes while the seq does not. A CDN in front then serves any number of pollers with
about one origin request per URL per max-age.

nginx counts an answer's life in whole seconds and keeps it fresh through the whole second
its expiry falls in, so ``max-age=1`` lives one to two seconds there, and a poller asking
every second then sees a change up to three seconds late. A public answer therefore also
names the last second it may be served fresh, in nginx's ``X-Accel-Expires: @<unix time>``
(which nginx never passes on to the client): one second's life at most per second of
max-age. Other caches ignore the header. It assumes the proxy's clock and ours agree (NTP).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from service.core.seq import Seq

MAX_AGE = re.compile(r"(?:^|,)\s*(s-maxage|max-age)\s*=\s*(\d+)", re.IGNORECASE)


def entity_tag(epoch: Seq, seq: Seq, *, withheld: bool = False) -> str:
    """The strong entity tag of a channel's answer, quotes included."""
    suffix = ":withheld" if withheld else ""
    return f'"{epoch}:{seq}{suffix}"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``tag`` (RFC 9110 13.1.2).

    The header is ``*`` or a comma-separated list of tags, each maybe weak (``W/"..."``);
    the comparison is the weak one, so ``W/"x"`` matches ``"x"``.
    """
    if if_none_match is None:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == tag:
            return True
    return False


@functools.cache  # one setting: parsed once, not per answer
def shared_lifetime(cache_control: str) -> int:
    """Seconds a shared cache may serve an answer fresh (``s-maxage``, else ``max-age``);
    0 when it may not keep it at all (or the header does not say)."""
    directives = {d.strip().lower() for d in cache_control.split(",")}
    if directives & {"private", "no-store", "no-cache"}:
        return 0
    ages = {name.lower(): int(value) for name, value in MAX_AGE.findall(cache_control)}
    return ages.get("s-maxage", ages.get("max-age", 0))


def cache_headers(request: Request, tag: str, cache_control: str) -> dict[str, str]:
    """``ETag``, ``Cache-Control`` and ``X-Accel-Expires`` for an answer to ``request``.

    An answer to a request with an ``Authorization`` header may hold what only that
    credential may see: a shared cache must not keep it, so it is ``private``.
    """
    headers = {"ETag": tag, "Cache-Control": cache_control}
    if "authorization" not in request.headers:
        lifetime = shared_lifetime(cache_control)
        if lifetime:
            headers["X-Accel-Expires"] = f"@{int(time.time()) + lifetime - 1}"
    else:
        directives = [d.strip() for d in cache_control.split(",")]
        kept = [d for d in directives if d.lower() not in ("public", "private", "")]
        headers["Cache-Control"] = ", ".join(["private", *kept])
        headers["Vary"] = "Authorization"
    return headers


def conditional(
    request: Request, tag: str, cache_control: str, build: Callable[[], Response]
) -> Response:
    """``304 Not Modified`` when the client holds ``tag``; else ``build()``'s answer.
    Either way with the caching headers; ``build`` runs only when the body is needed."""
    headers = cache_headers(request, tag, cache_control)
    if matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers)
    response = build()
    response.headers.update(headers)
    return response
