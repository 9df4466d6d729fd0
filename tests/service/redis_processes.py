"""Real redis-server and redis-sentinel processes of a test's own, on free loopback ports.

Debian's binaries (``apt-get install redis-server redis-sentinel``; .ci/run installs them):
a primary, its replicas and a Sentinel that the test can stop, restart, cut off and fail over.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from tests.conftest import TIMEOUT
from tests.service.test_process import free_port


def binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    assert path, f"this test needs Debian's {name}: apt-get install {name}"
    return path


@dataclass
class RedisProcess:
    """One redis-server (or, with ``sentinel``, redis-sentinel) on 127.0.0.1."""

    directory: Path
    extra: Sequence[str] = ()
    sentinel: bool = False
    config: str = ""
    """Lines for the Sentinel's configuration file (which it rewrites as it goes)."""
    password: str | None = None
    """The ``requirepass`` it was given (in ``extra`` or ``config``), for its clients here."""
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **options: object) -> aioredis.Redis:
        options.setdefault("password", self.password)
        return aioredis.Redis(host="127.0.0.1", port=self.port, **options)  # type: ignore[arg-type]

    async def start(self, *extra: str) -> None:
        """Start it (again), with ``extra`` configuration this time; wait until it answers."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.sentinel:
            config = self.directory / "sentinel.conf"
            if not config.exists():
                config.write_text(self.config)
            command = [binary("redis-sentinel"), str(config)]
        else:
            command = [binary("redis-server"), "--save", "", "--appendonly", "yes"]
        command += ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        command += [*self.extra, *extra]
        with (self.directory / "process.log").open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *command, stdout=log, stderr=subprocess.STDOUT
            )
        probe = self.client()
        try:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    if self.process.returncode is not None:
                        raise AssertionError((self.directory / "process.log").read_text())
                    with contextlib.suppress(RedisConnectionError, ResponseError, OSError):
                        await probe.execute_command("PING")
                        return
                    await asyncio.sleep(0.05)
        finally:
            await probe.aclose()

    async def stop(self, *, kill: bool = False) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        async with asyncio.timeout(TIMEOUT):
            await process.wait()


@contextlib.asynccontextmanager
async def running(*processes: RedisProcess) -> AsyncIterator[None]:
    """Start each in turn; stop every one on the way out, whatever happened."""
    try:
        for process in processes:
            await process.start()
        yield
    finally:
        for process in processes:
            with contextlib.suppress(Exception):
                await process.stop(kill=True)


@dataclass
class Sentinelled:
    """A primary, a replica of it and a Sentinel watching them as ``mymaster``."""

    primary: RedisProcess
    replica: RedisProcess
    sentinel: RedisProcess
    service: str = "mymaster"

    @property
    def url(self) -> str:
        userinfo = f":{self.primary.password}@" if self.primary.password else ""
        query = f"?sentinel_password={self.sentinel.password}" if self.sentinel.password else ""
        return f"redis+sentinel://{userinfo}127.0.0.1:{self.sentinel.port}/{self.service}/0{query}"

    async def primary_port(self) -> int:
        client = self.sentinel.client(decode_responses=True)
        try:
            address = await client.sentinel_get_master_addr_by_name(self.service)
            assert isinstance(address, tuple), address  # redis-py's type allows a bool
            _, port = address
            return int(port)
        finally:
            await client.aclose()

    async def wait_for_primary(self, process: RedisProcess) -> None:
        """Until the Sentinel names ``process`` as the primary (after a failover)."""
        async with asyncio.timeout(TIMEOUT):
            while await self.primary_port() != process.port:
                await asyncio.sleep(0.05)

    async def wait_for_replica(self) -> None:
        """Until the replica has synced and the Sentinel knows it: a failover may pick it."""
        client = self.sentinel.client(decode_responses=True)
        try:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    replicas = await client.sentinel_slaves(self.service)
                    if any(
                        r["port"] == self.replica.port
                        and r.get("master-link-status") == "ok"
                        and not r["is_sdown"]
                        for r in replicas
                    ):
                        return
                    await asyncio.sleep(0.1)
        finally:
            await client.aclose()


@contextlib.asynccontextmanager
async def sentinelled(
    directory: Path, *, password: str | None = None, sentinel_password: str | None = None
) -> AsyncIterator[Sentinelled]:
    """Start a primary, its replica and a Sentinel that fails over after 1 s of silence;
    with ``password`` Redis needs one, with ``sentinel_password`` the Sentinel does."""
    auth = ("--requirepass", password, "--masterauth", password) if password else ()
    primary = RedisProcess(directory / "primary", extra=auth, password=password)
    replica = RedisProcess(directory / "replica", password=password)
    replica.extra = (*auth, "--replicaof", "127.0.0.1", str(primary.port))
    config = (
        f"sentinel monitor mymaster 127.0.0.1 {primary.port} 1\n"
        "sentinel down-after-milliseconds mymaster 1000\n"
        "sentinel failover-timeout mymaster 10000\n"
    )
    if password:
        config += f"sentinel auth-pass mymaster {password}\n"
    if sentinel_password:
        config += f"requirepass {sentinel_password}\n"
    sentinel = RedisProcess(
        directory / "sentinel", sentinel=True, config=config, password=sentinel_password
    )
    async with running(primary, replica, sentinel):
        group = Sentinelled(primary, replica, sentinel)
        await group.wait_for_replica()
        yield group
