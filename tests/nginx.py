"""Debian's nginx in front of a running service, configured from deploy/nginx.conf.

Each nginx has its own temp prefix (config, cache, temp files, logs, pid) and free loopback
ports: ``url`` is the example's caching proxy; ``blocking_url`` a second server that passes
everything but the websocket upgrade, as a corporate proxy that blocks websockets does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

BLOCKING_SERVER = """
    # Test only: a proxy that drops the websocket upgrade (Upgrade and Connection are hop-by-
    # hop headers, not passed on unless set), as some corporate proxies do. /sse still works
    # through it: the origin's X-Accel-Buffering: no turns nginx's buffering off.
    server {
        listen 127.0.0.1:%(blocking)d;
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header Connection "";
        location / {
            proxy_pass http://seatcast;
            proxy_read_timeout 1h;
        }
    }
}
"""


@dataclass
class Nginx:
    port: int
    blocking_port: int
    prefix: Path

    @property
    def url(self) -> str:
        """The caching proxy, as deploy/nginx.conf configures it."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def blocking_url(self) -> str:
        """The same service through a proxy that does not pass the websocket upgrade."""
        return f"http://127.0.0.1:{self.blocking_port}"

    def error_log(self) -> str:
        log = self.prefix / "logs" / "error.log"
        return log.read_text(errors="replace") if log.exists() else ""


def configuration(origin_port: int, port: int, blocking_port: int) -> str:
    """deploy/nginx.conf with this test's addresses, one worker, and the blocking server."""
    text = EXAMPLE.read_text()
    replacements = {
        "listen 127.0.0.1:8080;": f"listen 127.0.0.1:{port};",
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{origin_port};",
        "worker_processes auto;": "worker_processes 1;",
    }
    for example, ours in replacements.items():
        # The example must keep these lines: the test runs exactly what it ships.
        assert text.count(example) == 1, f"deploy/nginx.conf no longer has {example!r}"
        text = text.replace(example, ours)
    if os.geteuid() == 0:
        # Root-safe: workers as nobody (nginx gives them its temp and cache dirs).
        text = "user nobody nogroup;\n" + text
    closing = text.rindex("}")
    return text[:closing] + BLOCKING_SERVER.lstrip("\n") % {"blocking": blocking_port}


def start(origin_port: int) -> tuple[Nginx, subprocess.Popen[bytes]]:
    prefix = Path(tempfile.mkdtemp(prefix="sc-nginx-", dir="/tmp"))
    prefix.chmod(0o755)  # the workers (nobody, when run as root) reach cache/ and temp/
    (prefix / "logs").mkdir()
    (prefix / "temp").mkdir()
    nginx = Nginx(free_port(), free_port(), prefix)
    config = prefix / "nginx.conf"
    config.write_text(configuration(origin_port, nginx.port, nginx.blocking_port))
    process = subprocess.Popen(
        [NGINX, "-p", f"{prefix}/", "-c", str(config), "-e", "logs/error.log", "-g", "daemon off;"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return nginx, process


@contextlib.asynccontextmanager
async def run_nginx(origin_port: int) -> AsyncIterator[Nginx]:
    """Start nginx in front of the service on ``origin_port``; stop it (and its workers) after."""
    nginx, process = await asyncio.to_thread(start, origin_port)
    try:
        async with asyncio.timeout(TIMEOUT):
            while not await _accepting(nginx.port) or not await _accepting(nginx.blocking_port):
                if process.poll() is not None:
                    raise RuntimeError(f"nginx did not start:\n{nginx.error_log()}")
                await asyncio.sleep(0.05)
        yield nginx
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # fast shutdown: workers stop with it
        try:
            await asyncio.to_thread(process.wait, TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, TIMEOUT)
        await asyncio.to_thread(shutil.rmtree, nginx.prefix, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _accepting(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


def require_nginx() -> None:
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed (apt-get install nginx; .ci/run installs it)")
