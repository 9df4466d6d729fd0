"""Starting, waiting for and stopping the servers under test, each as a process of its own.

``seatcast`` is ``python -m service``; ``naive`` and ``broadcast`` are the two reference
servers in :mod:`clients.loadgen.references`. All listen on 127.0.0.1 on a free port, read the
given stream from the given Redis, and answer ``GET /readyz`` with 200 once caught up.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

SERVERS = ("seatcast", "naive", "broadcast")
LABELS = {
    "seatcast": "seatcast",
    "naive": "Starlette send_text loop",
    "broadcast": "websockets broadcast()",
    "external": "server at --url",
}
MODULES = {
    "seatcast": "service",
    "naive": "clients.loadgen.references.naive_starlette",
    "broadcast": "clients.loadgen.references.ws_broadcast",
}
STOP_TIMEOUT = 15.0


class ServerError(RuntimeError):
    pass


@dataclass
class Server:
    kind: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


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
    port = free_port()
    log_path = log_dir / f"{kind}-{port}.log"
    log = log_path.open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEATCAST_")}
    cwd = None
    if source is not None and kind == "seatcast":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
        cwd = source
    process = subprocess.Popen(
        command(kind, port, stream, redis_url, extra if kind == "seatcast" else ()),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
    )
    server = Server(kind, port, process, log_path, log)
    try:
        wait_ready(server, timeout)
    except BaseException:
        stop(server)
        raise
    return server


def ready(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(
                f"{server.kind} exited with code {server.process.returncode} before it was "
                f"ready; its log ends:\n{server.log_tail()}"
            )
        if ready(server.port):
            return
        time.sleep(0.05)
    raise ServerError(
        f"{server.kind} was not ready within {timeout:.0f}s; its log ends:\n{server.log_tail()}"
    )


def stop(server: Server) -> int | None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT; return the exit code."""
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
