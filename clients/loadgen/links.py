"""Which link a load-generator connection uses: a websocket one (connections) or an HTTP one
(http_links, which builds on connections' ``Client``). Chosen here, above both, so that the
two modules do not import each other."""

from __future__ import annotations

from clients.loadgen import connections, http_links
from clients.loadgen.connections import Client, Link


async def open_link(
    kind: str, url: str, client: Client, poll_interval: float = 1.0, poll_wait: bool = False
) -> Link:
    """Connect (the caller bounds the time) and return the link; the client gets the frames."""
    if kind == "sse":
        return await http_links.open_sse(url, client)
    if kind == "poll":
        return await http_links.open_poller(url, client, poll_interval, poll_wait)
    if kind == "asyncio":
        return await connections.open_asyncio(url, client)
    if kind == "raw":
        return await connections.open_raw(url, client)
    if kind == "resp":
        return await connections.open_resp(url, client)
    known = ", ".join(connections.LINKS)
    raise ValueError(f"unknown client {kind!r}: use one of {known} (or resp, sse, poll)")
