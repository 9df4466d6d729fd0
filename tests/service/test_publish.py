"""POST /api/events against the real service and a real Redis: checked before anything is
written, written in order, idempotent under retries, closed to anyone without the right."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from service.publish import IDEMPOTENCY_TTL, MAX_EVENTS
from service.settings import Settings
from tests import replies
from tests.conftest import TIMEOUT
from tests.service.conftest import NIGHT_2024, RunningService, run_service
from tests.service.test_access import SECRET, token

DESK = token(publish=True, sub="desk-1")
PETERBOROUGH = "E14001425"
DECLARATIONS = [orjson.loads(line) for line in NIGHT_2024 if '"declaration"' in line][:3]
GOOD = DECLARATIONS[0]
NEGATIVE_VOTES = GOOD | {
    "candidates": [
        {"name": "Ana", "party": "LAB", "votes": 5},
        {"name": "Ben", "party": "CON", "votes": -1},
    ]
}


@pytest.fixture
async def desk(make_settings: Callable[..., Settings]) -> AsyncIterator[RunningService]:
    """A service that accepts tokens, and so publishing from tokens that allow it."""
    async with run_service(make_settings(token_secret=SECRET)) as running:
        yield running


@pytest.fixture(autouse=True)
async def drop_idempotency_keys(redis: aioredis.Redis, stream_key: str) -> AsyncIterator[None]:
    yield
    async for key in redis.scan_iter(match=f"{stream_key}:idempotency:*"):
        await redis.delete(key)


async def post(
    service: RunningService,
    body: Any = None,
    *,
    content: bytes | None = None,
    bearer: str | None = DESK,
    content_type: str | None = "application/json",
    **headers: str,
) -> httpx.Response:
    sent = {name.replace("_", "-"): value for name, value in headers.items()}
    if bearer is not None:
        sent["Authorization"] = f"Bearer {bearer}"
    if content_type is not None:
        sent["Content-Type"] = content_type
    if content is None:
        content = orjson.dumps(body)
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        return await client.post(service.http + "/api/events", content=content, headers=sent)


async def entries(redis: aioredis.Redis, stream: str) -> list[tuple[str, Any]]:
    return [
        (entry_id.decode(), orjson.loads(fields[b"event"]))
        for entry_id, fields in replies.entries(await redis.xrange(stream))
    ]


async def seat_status(service: RunningService, seat: str) -> str:
    async with asyncio.timeout(TIMEOUT):
        while True:
            state = (await service.get(f"/api/constituencies/{seat}")).json()["data"]
            if state["status"] != "awaiting":
                return str(state["status"])
            await asyncio.sleep(0.02)


# --- the happy path ----------------------------------------------------------------------------


async def test_one_event_is_written_and_answered_with_its_entry_id(
    desk: RunningService, redis: aioredis.Redis
) -> None:
    response = await post(desk, GOOD)

    assert response.status_code == 201, response.text
    (entry_id,) = response.json()["ids"]
    assert await entries(redis, desk.settings.stream) == [(entry_id, GOOD)]
    assert await seat_status(desk, GOOD["constituency"]) == "declared"
    metrics = (await desk.get("/metrics")).text
    assert "seatcast_events_published_total 1.0" in metrics


async def test_a_list_is_written_in_its_order_with_nothing_between(
    desk: RunningService, redis: aioredis.Redis
) -> None:
    response = await post(desk, DECLARATIONS)

    assert response.status_code == 201, response.text
    ids = response.json()["ids"]
    assert await entries(redis, desk.settings.stream) == list(zip(ids, DECLARATIONS, strict=True))


async def test_an_event_that_only_the_state_refuses_is_written_and_rejected_by_the_reader(
    desk: RunningService, redis: aioredis.Redis
) -> None:
    # The decoder's rules are checked before writing; a status for a declared seat depends on
    # the state when the reader applies it, as with any other writer.
    seat = GOOD["constituency"]
    response = await post(
        desk, [GOOD, {"type": "status", "constituency": seat, "status": "recount"}]
    )

    assert response.status_code == 201, response.text
    status_id = response.json()["ids"][1]
    async with asyncio.timeout(TIMEOUT):
        while not (
            rejected := replies.entries(await redis.xrange(f"{desk.settings.stream}:rejected"))
        ):
            await asyncio.sleep(0.02)
    assert rejected[0][1][b"id"].decode() == status_id


# --- refused: nothing written ------------------------------------------------------------------


async def test_one_bad_event_refuses_the_request_with_reasons_by_index(
    desk: RunningService, redis: aioredis.Redis
) -> None:
    events = [GOOD, NEGATIVE_VOTES, DECLARATIONS[1], {"type": "landslide"}]

    response = await post(desk, events)

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_events"
    assert body["message"] == "2 of 4 events are not valid; nothing was written"
    assert body["errors"] == [
        {"index": 1, "reason": "candidate 2 has negative votes"},
        {
            "index": 3,
            "reason": "unknown event type 'landslide' (expected one of declaration, exit_poll, "
            "flash, post, retraction, state_of_parties, status)",
        },
    ]
    assert await redis.xlen(desk.settings.stream) == 0


DEEP = b"[" * 100_000 + b"]" * 100_000
HOSTILE: list[tuple[str, dict[str, Any], int, str]] = [
    # (what, post() arguments, status, error code)
    ("not JSON", {"content": b"declaration N1 Ana 500"}, 400, "not_json"),
    ("truncated JSON", {"content": orjson.dumps(GOOD)[:-3]}, 400, "not_json"),
    ("an empty body", {"content": b""}, 400, "not_json"),
    ("invalid UTF-8", {"content": b'{"type": "flash", "constituency": "E\xff"}'}, 400, "not_json"),
    ("nested 100,000 deep", {"content": DEEP}, 400, "not_json"),
    ("a JSON string", {"body": "declaration"}, 422, "invalid_events"),
    ("a JSON number", {"content": b"123456789012345678901234567890"}, 422, "invalid_events"),
    ("null", {"body": None}, 422, "invalid_events"),
    ("an empty list", {"body": []}, 422, "no_events"),
    ("a list of lists", {"body": [[GOOD]]}, 422, "invalid_events"),
    (
        "votes as text",
        {"body": GOOD | {"candidates": [{"name": "A", "party": "LAB", "votes": "9"}]}},
        422,
        "invalid_events",
    ),
    (
        "candidates nested deep",
        {
            "content": b'{"type":"declaration","constituency":"E14001425","candidates":'
            + b"[" * 1000
            + b"]" * 1000
            + b"}"
        },
        422,
        "invalid_events",
    ),
    ("too many events", {"body": [GOOD] * (MAX_EVENTS + 1)}, 413, "too_many_events"),
    ("over the size limit", {"content": b" " * (1 << 20) + b"[]"}, 413, "too_large"),
    ("text/plain", {"body": GOOD, "content_type": "text/plain"}, 415, "unsupported_media_type"),
    (
        "a form",
        {"body": GOOD, "content_type": "application/x-www-form-urlencoded"},
        415,
        "unsupported_media_type",
    ),
    ("no content type", {"body": GOOD, "content_type": None}, 415, "unsupported_media_type"),
    (
        "an idempotency key too long",
        {"body": GOOD, "Idempotency_Key": "k" * 256},
        400,
        "bad_idempotency_key",
    ),
]


@pytest.mark.parametrize(
    ("arguments", "status", "code"),
    [pytest.param(arguments, status, code, id=what) for what, arguments, status, code in HOSTILE],
)
async def test_a_hostile_body_gets_a_clear_error_and_writes_nothing(
    desk: RunningService, redis: aioredis.Redis, arguments: dict[str, Any], status: int, code: str
) -> None:
    response = await post(desk, **arguments)

    assert (response.status_code, response.json()["error"]) == (status, code), response.text
    assert response.json()["message"]
    assert await redis.xlen(desk.settings.stream) == 0
    assert (await desk.get("/readyz")).status_code == 200


async def test_a_body_streamed_past_the_limit_without_a_length_is_cut_off_with_413(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    async with run_service(make_settings(token_secret=SECRET, publish_max_bytes=4096)) as desk:
        sent = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal sent
            yield b"["
            for _ in range(1000):  # 1 MB if it were all read
                sent += 1
                yield orjson.dumps(GOOD) + b","

        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            headers = {"Authorization": f"Bearer {DESK}", "Content-Type": "application/json"}
            response = await client.post(
                desk.http + "/api/events", content=chunks(), headers=headers
            )

        assert response.status_code == 413
        assert response.json()["message"] == "the body is over 4,096 bytes"
        assert await redis.xlen(desk.settings.stream) == 0


# --- who may publish ---------------------------------------------------------------------------


async def test_with_no_token_secret_publishing_is_closed_and_says_how_to_open_it(
    service: RunningService, redis: aioredis.Redis
) -> None:
    for bearer in (None, DESK):
        response = await post(service, GOOD, bearer=bearer)
        assert response.status_code == 403
        assert response.json()["error"] == "publishing_disabled"
        assert "SEATCAST_TOKEN_SECRET" in response.json()["message"]
        assert '"publish": true' in response.json()["message"]
    assert await redis.xlen(service.settings.stream) == 0


@pytest.mark.parametrize(
    ("bearer", "status", "words"),
    [
        pytest.param(None, 401, "publishing needs a token", id="no token"),
        pytest.param(
            token(secret="not-the-secret-but-long-enough-32b", publish=True),
            401,
            "not valid",
            id="signed with another secret",
        ),
        pytest.param(token(exp=int(time.time()) - 10, publish=True), 401, "expired", id="expired"),
        pytest.param("not.a.token", 401, "not valid", id="not a token"),
        pytest.param(token(), 403, "does not allow publishing", id="no publish claim"),
        pytest.param(token(publish="yes"), 403, "does not allow publishing", id="publish not true"),
        pytest.param(token(publish=False), 403, "does not allow publishing", id="publish false"),
    ],
)
async def test_a_request_without_the_right_to_publish_is_refused(
    desk: RunningService, redis: aioredis.Redis, bearer: str | None, status: int, words: str
) -> None:
    response = await post(desk, GOOD, bearer=bearer)

    assert response.status_code == status
    assert words in response.json()["message"]
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert await redis.xlen(desk.settings.stream) == 0


async def test_a_token_in_the_address_does_not_publish(
    desk: RunningService, redis: aioredis.Redis
) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.post(
            f"{desk.http}/api/events?token={DESK}",
            content=orjson.dumps(GOOD),
            headers={"Content-Type": "application/json"},
        )

    assert response.status_code == 401
    assert await redis.xlen(desk.settings.stream) == 0


async def test_requests_over_the_rate_limit_get_429_with_a_time_to_retry(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    async with run_service(make_settings(token_secret=SECRET, rate_limit=0.5)) as desk:
        # A burst of twice the rate (one request), then refused until a token comes back.
        first = await post(desk, GOOD)
        second = await post(desk, DECLARATIONS[1])
        other_desk = await post(desk, DECLARATIONS[2], bearer=token(publish=True, sub="desk-2"))

        assert first.status_code == 201
        assert second.status_code == 429
        assert second.json()["error"] == "rate_limited"
        assert 1 <= int(second.headers["Retry-After"]) <= 2
        assert other_desk.status_code == 201
        assert await redis.xlen(desk.settings.stream) == 2


# --- Idempotency-Key ---------------------------------------------------------------------------


async def test_a_retry_with_the_same_key_gets_the_first_answer_and_writes_nothing(
    desk: RunningService, redis: aioredis.Redis
) -> None:
    first = await post(desk, DECLARATIONS, Idempotency_Key="night-1/batch-7")
    retry = await post(desk, DECLARATIONS, Idempotency_Key="night-1/batch-7")

    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert await redis.xlen(desk.settings.stream) == len(DECLARATIONS)
    key = f"{desk.settings.stream}:idempotency:night-1/batch-7"
    assert 0 < await redis.ttl(key) <= IDEMPOTENCY_TTL
    # Another key is another request.
    assert (await post(desk, GOOD, Idempotency_Key="night-1/batch-8")).status_code == 201
    assert await redis.xlen(desk.settings.stream) == len(DECLARATIONS) + 1


async def test_concurrent_retries_write_once_and_all_get_the_same_answer(
    desk: RunningService, redis: aioredis.Redis
) -> None:
    responses = await asyncio.gather(
        *(post(desk, DECLARATIONS, Idempotency_Key="racing") for _ in range(8))
    )

    assert [r.status_code for r in responses] == [201] * 8
    assert len({tuple(r.json()["ids"]) for r in responses}) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
    assert await redis.xlen(desk.settings.stream) == len(DECLARATIONS)


async def test_a_key_used_again_for_another_request_is_refused(
    desk: RunningService, redis: aioredis.Redis
) -> None:
    assert (await post(desk, GOOD, Idempotency_Key="k1")).status_code == 201

    response = await post(desk, DECLARATIONS[1], Idempotency_Key="k1")

    assert response.status_code == 422
    assert response.json()["error"] == "idempotency_key_reused"
    assert await redis.xlen(desk.settings.stream) == 1


async def test_a_refused_request_stores_no_answer_for_its_key(
    desk: RunningService, redis: aioredis.Redis
) -> None:
    assert (await post(desk, NEGATIVE_VOTES, Idempotency_Key="fixed")).status_code == 422

    # The desk fixes the event and retries with the same key: it is written.
    response = await post(desk, GOOD, Idempotency_Key="fixed")

    assert response.status_code == 201
    assert await redis.xlen(desk.settings.stream) == 1


# --- Redis permissions -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def redis_user(
    redis: aioredis.Redis, redis_url: str, settings: Settings, *rules: str
) -> AsyncIterator[str]:
    """A Redis ACL user with the reading service's least rights plus ``rules``; its URL.

    The event stream is not made read-only (``%R~``): the embedded redis-server predates it.
    """
    user = f"seatcast-publish-{settings.stream.split(':')[1]}"
    await redis.execute_command(
        "ACL", "SETUSER", user, "on", ">acl-test-password", "resetkeys", "resetchannels",
        "-@all", "+xread", "+xrange", "+xrevrange", "+xadd", "+ping", "+hello",
        f"~{settings.stream}", f"~{settings.rejected}", *rules,
    )  # fmt: skip
    try:
        if redis_url.startswith("unix://"):
            yield f"unix://{user}:acl-test-password@{redis_url.removeprefix('unix://')}"
        else:
            yield redis_url.replace("redis://", f"redis://{user}:acl-test-password@", 1)
    finally:
        await redis.execute_command("ACL", "DELUSER", user)


async def test_publishing_works_with_the_rights_the_readme_documents_and_not_without(
    make_settings: Callable[..., Settings], redis: aioredis.Redis, redis_url: str
) -> None:
    settings = make_settings(token_secret=SECRET)
    stream = settings.stream
    publishing = (
        f"~{stream}:idempotency:*",
        "+evalsha",
        "+script|load",
        "+get",
        "+set",
    )
    async with redis_user(redis, redis_url, settings, *publishing) as url:
        async with run_service(settings.model_copy(update={"redis_url": url})) as desk:
            response = await post(desk, GOOD, Idempotency_Key="with-rights")
            assert response.status_code == 201, response.text
            retry = await post(desk, GOOD, Idempotency_Key="with-rights")
            assert retry.json() == response.json()
            assert await redis.xlen(stream) == 1
    async with redis_user(redis, redis_url, settings) as url:
        async with run_service(settings.model_copy(update={"redis_url": url})) as desk:
            response = await post(desk, DECLARATIONS[1])
            assert response.status_code == 503
            assert response.json()["message"].endswith("; nothing was written")
            assert "no permissions" in response.json()["message"]
            assert await redis.xlen(stream) == 1
