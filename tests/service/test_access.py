"""Access control: subscriber tokens, origins, the metrics token and the exit-poll embargo."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import redis.asyncio as aioredis
import redis.exceptions as redis_errors
import websockets
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from websockets.exceptions import ConnectionClosed

from service.settings import Settings
from tests.conftest import TIMEOUT
from tests.service.conftest import RunningService, connect, run_service, xadd
from tests.service.test_process import free_port

SECRET = "s3cret-for-tests-only-0123456789abcdef"
EMBARGO_SECONDS = 4


def token(secret: str = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    claims.setdefault("exp", int(time.time()) + 600)
    return jwt.encode(claims, secret, algorithm=algorithm)


async def refusal(service: RunningService, **options: Any) -> tuple[int | None, str | None]:
    async with websockets.connect(service.ws, open_timeout=TIMEOUT, **options) as ws:
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(TIMEOUT):
                while True:
                    await ws.recv()
        return ws.close_code, ws.close_reason


async def test_tokens_required_refuse_clients_without_a_valid_one(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(token_secret=SECRET, require_token=True)
    async with run_service(settings) as service:
        assert await refusal(service) == (1008, "a token is required")
        expired = token(exp=int(time.time()) - 10)
        assert await refusal(
            service, additional_headers={"Authorization": f"Bearer {expired}"}
        ) == (
            1008,
            "the token has expired",
        )
        forged = token(secret="not-the-secret-but-long-enough-32b")
        code, reason = await refusal(
            service, additional_headers={"Authorization": f"Bearer {forged}"}
        )
        assert code == 1008
        assert reason is not None and "not valid" in reason
        assert (await service.get("/api/national")).status_code == 401
        async with httpx.AsyncClient() as client:
            ok = await client.get(
                service.http + "/api/national", headers={"Authorization": f"Bearer {token()}"}
            )
            assert ok.status_code == 200
            assert (
                await client.get(service.http + f"/api/national?token={token()}")
            ).status_code == 200
        async with websockets.connect(service.ws + f"?token={token()}", open_timeout=TIMEOUT) as ws:
            hello = await ws.recv()
            assert isinstance(hello, str)
            assert b"hello" in hello.encode()


async def test_a_token_limits_the_channels(make_settings: Callable[..., Settings]) -> None:
    async with run_service(make_settings(token_secret=SECRET)) as service:
        limited = token(channels=["national", "region:*"])
        async with connect(service, additional_headers={"Authorization": f"Bearer {limited}"}) as c:
            await c.receive()
            await c.subscribe("national", "region:london", "declarations")
            error = await c.receive()
            assert error["code"] == "forbidden"
            assert "declarations" in error["message"]
            got = {(await c.receive())["channel"], (await c.receive())["channel"]}
            assert got == {"national", "region:london"}
        async with httpx.AsyncClient() as client:
            headers = {"Authorization": f"Bearer {limited}"}
            denied = await client.get(service.http + "/api/declarations", headers=headers)
            assert denied.status_code == 403
            assert denied.json()["error"] == "forbidden"
            everything = await client.get(service.http + "/api/constituencies", headers=headers)
            assert everything.json()["data"] == {}


async def test_a_token_that_expires_mid_connection_closes_it(
    make_settings: Callable[..., Settings],
) -> None:
    async with run_service(make_settings(token_secret=SECRET)) as service:
        expires = int(time.time()) + 4  # 3-4 s: time to be let in on a loaded machine
        headers = {"Authorization": f"Bearer {token(exp=expires)}"}
        async with websockets.connect(
            service.ws, open_timeout=TIMEOUT, additional_headers=headers
        ) as ws:
            async with asyncio.timeout(TIMEOUT):
                assert orjson.loads(await ws.recv())["type"] == "hello"  # let in
                with contextlib.suppress(ConnectionClosed):
                    while True:
                        await ws.recv()
        assert (ws.close_code, ws.close_reason) == (1008, "the token has expired")
        assert time.time() >= expires  # closed by the expiry, not refused at the door


async def test_es256_tokens_are_checked_with_the_public_key(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = tmp_path / "public.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    settings = make_settings(token_public_key=public, require_token=True)
    async with run_service(settings) as service:
        good = token(key, "ES256")  # type: ignore[arg-type]
        async with connect(service, additional_headers={"Authorization": f"Bearer {good}"}) as c:
            assert (await c.receive())["type"] == "hello"
        hs = token()  # a shared-secret token is not accepted where a key is configured
        assert (await refusal(service, additional_headers={"Authorization": f"Bearer {hs}"}))[
            0
        ] == 1008


async def test_an_origin_allowlist_binds_browsers(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(allowed_origins="https://news.example")
    async with run_service(settings) as service:
        assert await refusal(service, origin="https://evil.example") == (
            1008,
            "this origin is not allowed",
        )
        async with connect(service, origin="https://news.example") as client:
            assert (await client.receive())["type"] == "hello"
        async with connect(service) as client:  # no Origin: not a browser
            assert (await client.receive())["type"] == "hello"


async def test_metrics_can_require_a_token(make_settings: Callable[..., Settings]) -> None:
    async with run_service(make_settings(metrics_token="m-token")) as service:
        assert (await service.get("/metrics")).status_code == 401
        async with httpx.AsyncClient() as client:
            response = await client.get(
                service.http + "/metrics", headers={"Authorization": "Bearer m-token"}
            )
            assert response.status_code == 200
            assert "seatcast_events_applied_total" in response.text


async def test_an_embargoed_exit_poll_reaches_only_newsrooms_until_its_time(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    async with run_service(make_settings(token_secret=SECRET)) as service:
        newsroom = {"Authorization": f"Bearer {token(embargo=True)}"}
        async with (
            connect(service) as public,
            connect(service, additional_headers=newsroom) as desk,
        ):
            for client in (public, desk):
                await client.receive()
                await client.subscribe("national")
                await client.receive()
            # Long enough for the checks before it to run on a loaded machine.
            until = datetime.now(UTC) + timedelta(seconds=EMBARGO_SECONDS)
            poll = {"type": "exit_poll", "seats": {"LAB": 410, "CON": 131}}
            [entry] = await xadd(
                redis, service.settings.stream, {**poll, "embargo_until": until.isoformat()}
            )
            seen = await desk.receive()
            assert seen["patch"]["exit_poll"]["seats"]["LAB"] == 410
            withheld = await public.receive()
            assert withheld["seq"] == entry
            assert "exit_poll" not in withheld["patch"]
            assert "exit_poll" not in (await service.get("/api/national")).json()["data"]
            async with httpx.AsyncClient() as http:
                rest = await http.get(service.http + "/api/national", headers=newsroom)
                assert rest.json()["data"]["exit_poll"]["seats"]["CON"] == 131
            # At the embargo's time the public gets a fresh snapshot with the exit poll.
            lifted = await public.receive()
            assert lifted["type"] == "snapshot"
            assert lifted["data"]["exit_poll"]["seats"]["LAB"] == 410
            assert datetime.now(UTC) >= until
            assert "exit_poll" in (await service.get("/api/national")).json()["data"]


async def test_secrets_are_never_logged(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(token_secret=SECRET, metrics_token="metrics-secret-value")
    assert SECRET not in repr(settings)
    assert "metrics-secret-value" not in repr(settings)
    uvicorn_logger = logging.getLogger("uvicorn")  # it does not propagate to the root
    async with run_service(settings) as service:
        uvicorn_logger.addHandler(caplog.handler)  # after uvicorn configured its logging
        client_token = token()
        async with connect(
            service, additional_headers={"Authorization": f"Bearer {client_token}"}
        ) as client:
            await client.receive()
        await refusal(service, additional_headers={"Authorization": "Bearer not.a.token"})
        query_token = token(sub="query")
        async with websockets.connect(
            service.ws + f"?token={query_token}", open_timeout=TIMEOUT
        ) as ws:
            await ws.recv()
        async with httpx.AsyncClient() as http:
            await http.get(service.http + f"/api/national?token={query_token}")
    uvicorn_logger.removeHandler(caplog.handler)
    # What the service logs (the test's own clients log their requests, tokens and all).
    logged = "\n".join(
        record.getMessage()
        for record in caplog.records
        if record.name.startswith(("seatcast", "uvicorn", "starlette", "redis"))
    )
    assert "/ws" in logged  # uvicorn did log the connections
    for secret in (SECRET, client_token, query_token, "metrics-secret-value", "not.a.token"):
        assert secret not in logged


@contextlib.asynccontextmanager
async def acl_user(
    redis: aioredis.Redis, redis_url: str, stream: str, rejected: str, commands: tuple[str, ...]
) -> AsyncIterator[str]:
    """A Redis ACL user limited to the two streams and ``commands``; yields its URL."""
    user = f"seatcast-test-{stream.split(':')[1]}"
    await redis.execute_command(
        "ACL", "SETUSER", user, "on", ">acl-test-password", "resetkeys", f"~{stream}",
        f"~{rejected}", "resetchannels", "-@all", *commands,
    )  # fmt: skip
    try:
        if redis_url.startswith("unix://"):
            yield f"unix://{user}:acl-test-password@{redis_url.removeprefix('unix://')}"
        else:
            yield redis_url.replace("redis://", f"redis://{user}:acl-test-password@", 1)
    finally:
        await redis.execute_command("ACL", "DELUSER", user)


async def test_the_service_runs_with_the_minimal_acl_the_readme_documents(
    make_settings: Callable[..., Settings], redis: aioredis.Redis, redis_url: str
) -> None:
    settings = make_settings()
    stream, rejected = settings.stream, settings.rejected
    commands = ("+xread", "+xrange", "+xrevrange", "+xadd", "+ping", "+hello")
    async with acl_user(redis, redis_url, stream, rejected, commands) as url:
        async with run_service(make_settings(redis_url=url)) as service:
            [good, bad] = await xadd(
                redis, stream, {"type": "exit_poll", "seats": {"LAB": 1}}, "not json"
            )
            async with asyncio.timeout(TIMEOUT):
                while await redis.xlen(rejected) < 1:
                    await asyncio.sleep(0.02)
            assert (await service.get("/readyz")).json()["seq"] == bad
            assert (await service.get("/api/national")).json()["seq"] == good


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, the certificate its own authority."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "redis.crt", directory / "redis.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextlib.asynccontextmanager
async def tls_redis(directory: Path) -> AsyncIterator[str]:
    """Debian's redis-server with TLS and a password on a loopback port; yields its URL.

    A port found free may be taken before redis-server binds it: then it exits, and is
    started again on another port."""
    server = shutil.which("redis-server")
    assert server, "a TLS-capable redis-server is needed: apt-get install redis-server"
    cert, key = self_signed_certificate(directory)
    for _ in range(3):
        port = free_port()
        process = subprocess.Popen(  # noqa: ASYNC220 - started once, before the test
            [
                server, "--port", "0", "--bind", "127.0.0.1", "--tls-port", str(port),
                "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
                "--requirepass", "tls-test-password", "--save", "", "--appendonly", "no",
                "--dir", str(directory),
            ],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"rediss://:tls-test-password@127.0.0.1:{port}/0?ssl_ca_certs={cert}"
        client = aioredis.Redis.from_url(url)
        try:
            async with asyncio.timeout(TIMEOUT):
                while process.poll() is None:
                    with contextlib.suppress(OSError, redis_errors.ConnectionError):
                        if await client.ping():
                            break
                    await asyncio.sleep(0.05)
            if process.poll() is None:
                yield url
                return
        finally:
            await client.aclose()
            if process.poll() is None:
                process.terminate()
            process.wait(TIMEOUT)
    raise AssertionError("three ports found free were taken before redis-server bound them")


async def test_the_service_reads_a_redis_over_tls_with_a_password(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with tls_redis(tmp_path) as url:
        client = aioredis.Redis.from_url(url)
        try:
            settings = make_settings(redis_url=url)
            async with run_service(settings) as service:
                [entry] = await xadd(
                    client, settings.stream, {"type": "exit_poll", "seats": {"LAB": 9}}
                )
                async with asyncio.timeout(TIMEOUT):
                    while (await service.get("/api/national")).json()["seq"] != entry:
                        await asyncio.sleep(0.02)
            # And a wrong password is refused (the service would log and retry, not start).
            wrong = aioredis.Redis.from_url(url.replace("tls-test-password", "wrong"))
            with pytest.raises(redis_errors.AuthenticationError):
                await wrong.ping()
            await wrong.aclose()
        finally:
            await client.aclose()


async def test_where_rejected_events_cannot_be_written_the_reader_goes_on(
    make_settings: Callable[..., Settings], redis: aioredis.Redis, redis_url: str
) -> None:
    """A read-only replica, or a user without XADD: rejections are logged and counted only."""
    settings = make_settings()
    commands = ("+xread", "+xrange", "+xrevrange", "+ping", "+hello")  # no +xadd
    async with acl_user(redis, redis_url, settings.stream, settings.rejected, commands) as url:
        async with run_service(make_settings(redis_url=url)) as service:
            ids = await xadd(
                redis, settings.stream, "not json", {"type": "exit_poll", "seats": {"LAB": 3}}
            )
            async with asyncio.timeout(TIMEOUT):
                while (await service.get("/api/national")).json()["seq"] != ids[-1]:
                    await asyncio.sleep(0.02)
            assert "seatcast_events_rejected_total 1.0" in (await service.get("/metrics")).text
            assert await redis.xlen(settings.rejected) == 0
