"""Following a folder and an FTP drop (a real pyftpdlib server on loopback) with the PA adapter."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.clients.commands import ROOT
from tests.clients.pa_support import (
    PETERBOROUGH,
    bundled,
    pa_env,
    pa_stream,
    result_file,
    run_pa,
    service_settings,
    summary,
)
from tests.conftest import TIMEOUT
from tests.service.conftest import connect, run_service

with warnings.catch_warnings():  # pyftpdlib still runs on asyncore, deprecated in 3.11
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

__all__ = ["pa_stream"]  # the fixture, used by name

SUNDERLAND_CENTRAL = "E14001531"


@contextlib.asynccontextmanager
async def adapter(*args: str, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m clients.pa args`` running in the background; stopped with SIGTERM after."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clients.pa",
        *args,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def stop(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def drop_file(folder: Path, name: str, content: bytes) -> None:
    """Land a file whole, as an FTP client renaming its upload into place does."""
    partial = folder / f".{name}.part"
    partial.write_bytes(content)
    os.replace(partial, folder / name)


async def test_a_file_dropped_into_a_followed_folder_reaches_a_websocket_client(
    tmp_path: Path, redis_url: str, pa_stream: str
) -> None:
    election = bundled()
    drop = tmp_path / "drop"
    drop.mkdir()
    first = result_file(election, SUNDERLAND_CENTRAL)
    drop_file(drop, *first)

    async with (
        run_service(service_settings(redis_url, pa_stream)) as service,
        connect(service) as client,
        adapter("--dir", str(drop), env=pa_env(redis_url, pa_stream)) as proc,
    ):
        await client.subscribe("declarations")

        async def declared(seat: str, kind: str) -> dict[str, Any]:
            message = await client.receive_until(
                lambda m: m["type"] == "event" and m["data"]["constituency"]["id"] == seat
            )
            assert message["data"]["kind"] == kind
            return message

        await declared(SUNDERLAND_CENTRAL, "declaration")  # the folder as it was at the start
        name, content = result_file(election, PETERBOROUGH)
        drop_file(drop, name, content)
        message = await declared(PETERBOROUGH, "declaration")
        assert message["data"]["headline"] == (
            "Labour gain Peterborough from Conservative, majority 118"
        )
        # A higher revision of a result is a correction.
        corrected = content.replace(b'revision="1"', b'revision="2"').replace(
            b'votes="225"', b'votes="226"'
        )
        drop_file(drop, name.replace("_1.xml", "_2.xml"), corrected)
        await declared(PETERBOROUGH, "correction")

        code, err = await stop(proc)

    assert code == 128 + signal.SIGTERM, err
    assert summary(err).__dict__ == {"read": 3, "written": 3, "quarantined": 0, "skipped": 0}


@pytest.fixture
def ftp_drop(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real FTP server on 127.0.0.1 serving a folder; yields its URL and the folder."""
    folder = tmp_path / "ftp"
    folder.mkdir()
    authorizer = DummyAuthorizer()
    authorizer.add_user("pa", "s3cret", str(folder), perm="elr")
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer, "banner": "PA drop"})
    server = FTPServer(("127.0.0.1", 0), handler)
    port = server.socket.getsockname()[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"ftp://pa:s3cret@127.0.0.1:{port}/", folder
    finally:
        server.close_all()
        thread.join(TIMEOUT)


async def test_an_ftp_drop_is_mirrored_then_read_and_a_second_run_writes_nothing(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str, pa_stream: str, ftp_drop: Any
) -> None:
    url, remote = ftp_drop
    election = bundled()
    for seat in (SUNDERLAND_CENTRAL, PETERBOROUGH):
        name, content = result_file(election, seat)
        (remote / name).write_bytes(content)
    (remote / "broken.xml").write_bytes(b"<FirstPastThePostResult")
    mirror = tmp_path / "mirror"
    env = pa_env(redis_url, pa_stream)

    run = await run_pa("--ftp", url, "--dir", str(mirror), "--once", env=env)

    assert run.code == 0, run.stderr
    assert summary(run.stderr).__dict__ == {"read": 3, "written": 2, "quarantined": 1, "skipped": 0}
    assert (mirror / "quarantine" / "broken.xml.reason").read_text().startswith("malformed XML")
    assert await redis.xlen(pa_stream) == 2

    again = await run_pa("--ftp", url, "--dir", str(mirror), "--once", env=env)

    assert again.code == 0, again.stderr
    assert summary(again.stderr).written == 0
    assert summary(again.stderr).skipped == 2
    assert await redis.xlen(pa_stream) == 2


async def test_a_followed_ftp_drop_brings_in_files_as_they_land(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str, pa_stream: str, ftp_drop: Any
) -> None:
    url, remote = ftp_drop
    election = bundled()
    mirror = tmp_path / "mirror"
    args = ("--ftp", url, "--dir", str(mirror), "--interval", "0.1")

    async with adapter(*args, env=pa_env(redis_url, pa_stream)) as proc:
        for count, seat in enumerate((SUNDERLAND_CENTRAL, PETERBOROUGH), start=1):
            drop_file(remote, *result_file(election, seat))
            async with asyncio.timeout(TIMEOUT):
                while await redis.xlen(pa_stream) < count:
                    await asyncio.sleep(0.02)
        code, err = await stop(proc)

    assert code == 128 + signal.SIGTERM, err
    assert summary(err).written == 2
    assert sorted(p.name for p in mirror.iterdir()) == sorted(
        result_file(election, seat)[0] for seat in (PETERBOROUGH, SUNDERLAND_CENTRAL)
    )
