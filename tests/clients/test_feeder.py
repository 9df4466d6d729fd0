"""The replay feeder (clients/feeder.py), run as a real process against a real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from clients.feeder import FeederError, Stopper, Writer, _Interrupted, build_parser, redact
from tests.clients.commands import ROOT, Run, run_module
from tests.conftest import TIMEOUT

# A whole replay is a process start and 650 seats: twice the suite's bound.
REPLAY_SECONDS = TIMEOUT * 2
# Nothing listens on port 1: a Redis URL that can never answer.
DEAD_URL = "redis://127.0.0.1:1/0"


def feeder_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "SEATCAST_STREAM", "SEATCAST_DATA_DIR")
    }
    env.update(extra)
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "clients.feeder", *args]


async def run_feeder(*args: str, env: dict[str, str] | None = None) -> Run:
    return await run_module(
        "clients.feeder",
        *args,
        env=env if env is not None else feeder_env(),
        seconds=REPLAY_SECONDS,
    )


async def replay(redis_url: str, stream: str, *args: str) -> Run:
    return await run_feeder("--redis-url", redis_url, "--stream", stream, "--speed", "0", *args)


async def entries(redis: aioredis.Redis, stream: str) -> list[tuple[str, dict[str, Any]]]:
    result: list[tuple[str, dict[str, Any]]] = []
    for entry_id, fields in await redis.xrange(stream) or []:
        assert isinstance(entry_id, bytes) and fields is not None
        assert set(fields) == {b"event"}
        result.append((entry_id.decode(), json.loads(fields[b"event"])))
    return result


def written(stderr: str) -> int:
    match = re.search(r"wrote (\d+) events?", stderr)
    assert match, stderr
    return int(match.group(1))


async def test_replays_the_first_seats(
    redis: aioredis.Redis, redis_url: str, stream_key: str
) -> None:
    run = await replay(redis_url, stream_key, "--limit", "20")
    assert run.code == 0, run.stderr
    got = await entries(redis, stream_key)
    events = [event for _, event in got]
    assert events[0]["type"] == "exit_poll"
    assert "LAB" in events[0]["seats"]
    declarations = [e for e in events if e["type"] == "declaration"]
    assert len(declarations) == 20 == len(events) - 1
    assert len({e["constituency"] for e in declarations}) == 20
    assert all(e["revision"] == 1 for e in declarations)
    assert all(isinstance(e["candidates"], list) and e["candidates"] for e in declarations)
    # The summary names what was written.
    assert written(run.stderr) == len(got)
    assert got[0][0] in run.stderr and got[-1][0] in run.stderr
    assert "20/20 seats declared" in run.stderr
    assert run.stdout == ""


async def test_extras_reach_the_stream(
    redis: aioredis.Redis, redis_url: str, stream_key: str
) -> None:
    run = await replay(
        redis_url, stream_key, "--limit", "30", "--flashes", "--corrections", "4", "--seed", "7"
    )
    assert run.code == 0, run.stderr
    events = [event for _, event in await entries(redis, stream_key)]
    kinds = [e["type"] for e in events]
    assert kinds.count("flash") == 30
    assert kinds.count("declaration") == 34
    revisions: dict[str, list[int]] = {}
    for event in events[1:]:
        revisions.setdefault(event["constituency"], []).append(event["revision"])
    assert all(r == list(range(1, len(r) + 1)) for r in revisions.values())


async def test_refuses_a_stream_with_entries(
    redis: aioredis.Redis, redis_url: str, stream_key: str
) -> None:
    assert (await replay(redis_url, stream_key, "--limit", "5")).code == 0
    before = await entries(redis, stream_key)
    run = await replay(redis_url, stream_key, "--limit", "5")
    assert run.code == 2
    assert "already has 6 entries" in run.stderr
    assert "--append" in run.stderr and "--reset" in run.stderr
    assert "Traceback" not in run.stderr
    assert await entries(redis, stream_key) == before


async def test_reset_replaces(redis: aioredis.Redis, redis_url: str, stream_key: str) -> None:
    assert (await replay(redis_url, stream_key, "--limit", "5")).code == 0
    old_ids = {entry_id for entry_id, _ in await entries(redis, stream_key)}
    run = await replay(redis_url, stream_key, "--limit", "3", "--reset")
    assert run.code == 0, run.stderr
    got = await entries(redis, stream_key)
    assert [e["type"] for _, e in got] == ["exit_poll"] + ["declaration"] * 3
    assert not old_ids & {entry_id for entry_id, _ in got}


async def test_append_adds(redis: aioredis.Redis, redis_url: str, stream_key: str) -> None:
    assert (await replay(redis_url, stream_key, "--limit", "5")).code == 0
    before = await entries(redis, stream_key)
    run = await replay(redis_url, stream_key, "--limit", "3", "--append")
    assert run.code == 0, run.stderr
    after = await entries(redis, stream_key)
    assert after[: len(before)] == before
    assert len(after) == len(before) + 4
    assert after[len(before)][1]["type"] == "exit_poll"


async def test_append_and_reset_exclude_each_other(redis_url: str, stream_key: str) -> None:
    run = await replay(redis_url, stream_key, "--append", "--reset")
    assert run.code == 2
    assert "not allowed with" in run.stderr


async def test_print_needs_no_redis() -> None:
    run = await run_feeder(
        "--print", "--limit", "5", "--flashes", env=feeder_env(REDIS_URL=DEAD_URL)
    )
    assert run.code == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert [e["type"] for e in events] == ["exit_poll"] + ["flash", "declaration"] * 5
    assert all(": " not in line for line in run.stdout.splitlines())  # compact JSON


async def test_a_bad_night_is_reported(tmp_path: Path) -> None:
    night = tmp_path / "bad.jsonl"
    night.write_text('{"type": "exit_poll", "seats": {}}\n{"type": \n', encoding="utf-8")
    run = await run_feeder("--night", str(night), "--print")
    assert run.code == 2
    assert f"{night}:2: not valid JSON" in run.stderr
    assert "Traceback" not in run.stderr


async def test_unreachable_redis_gives_up() -> None:
    url = "redis://:hunter2@127.0.0.1:1/0"
    run = await run_feeder("--redis-url", url, "--wait", "0.5", "--limit", "1")
    assert run.code == 1
    assert "no Redis answering at redis://:***@127.0.0.1:1/0" in run.stderr
    assert "hunter2" not in run.stderr
    assert "Traceback" not in run.stderr


class ScriptedRedis(redis.Redis):
    """A client whose XADDs fail with ``failures`` in turn, then succeed: no Redis needed."""

    def __init__(self, *failures: redis.RedisError) -> None:
        super().__init__()
        self.failures = list(failures)
        self.calls = 0

    def xadd(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return b"7-0"


def test_a_write_is_retried_through_connection_errors() -> None:
    client = ScriptedRedis(redis.ConnectionError("down"), redis.TimeoutError("slow"))
    with Stopper().installed() as stopper:
        assert Writer(client, "s", stopper, patience=5).add(b"{}") == "7-0"
    assert client.calls == 3


def test_a_write_gives_up_after_wait_seconds() -> None:
    client = ScriptedRedis(*[redis.ConnectionError("down")] * 100)
    started = time.monotonic()
    with Stopper().installed() as stopper, pytest.raises(FeederError) as raised:
        Writer(client, "s", stopper, patience=0.5).add(b"{}")
    assert time.monotonic() - started <= 0.5
    # Waits of 0.1 and 0.2 s; a third of 0.4 s would overrun the 0.5 s.
    assert "XADD to s failed 3 times in 0.5s (--wait), giving up: down" in str(raised.value)
    assert client.calls == 3


@pytest.mark.parametrize(
    "refusal",
    [redis.AuthenticationError("bad password"), redis.exceptions.AuthorizationError("no perm")],
)
def test_a_refused_write_is_not_retried(refusal: redis.RedisError) -> None:
    client = ScriptedRedis(refusal)
    with Stopper().installed() as stopper, pytest.raises(FeederError) as raised:
        Writer(client, "s", stopper, patience=5).add(b"{}")
    assert str(raised.value) == f"XADD to s failed: {refusal}"
    assert client.calls == 1


def test_a_stop_ends_the_wait_between_attempts_at_once() -> None:
    client = ScriptedRedis(*[redis.ConnectionError("down")] * 100)
    started = time.monotonic()
    with Stopper().installed() as stopper, pytest.raises(_Interrupted):
        stopper.signum = signal.SIGTERM
        Writer(client, "s", stopper, patience=30).add(b"{}")
    assert time.monotonic() - started < 0.1
    assert client.calls == 1


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://user:pw@host/1", "rediss://user:***@host/1"),
        ("redis://host:6379", "redis://host:6379"),
        ("unix:///tmp/sc/redis.sock", "unix:///tmp/sc/redis.sock"),
    ],
)
def test_passwords_are_never_shown(url: str, shown: str) -> None:
    assert redact(url) == shown


async def test_without_redis_url_it_waits_for_the_embedded_socket(tmp_path: Path) -> None:
    data_dir = tmp_path / "sc"
    started = time.monotonic()
    run = await run_feeder(
        "--wait", "1", "--limit", "1", env=feeder_env(SEATCAST_DATA_DIR=str(data_dir))
    )
    assert run.code == 1
    assert time.monotonic() - started >= 1
    assert f"unix://{data_dir}/redis.sock" in run.stderr
    assert "start the service" in run.stderr and "REDIS_URL" in run.stderr
    assert not data_dir.exists()  # the feeder never starts a Redis of its own


async def test_a_stream_key_of_another_type(
    redis: aioredis.Redis, redis_url: str, stream_key: str
) -> None:
    await redis.set(stream_key, "not a stream")
    run = await replay(redis_url, stream_key, "--limit", "1", "--append")
    assert run.code == 1
    assert "WRONGTYPE" in run.stderr
    assert "Traceback" not in run.stderr


async def test_ctrl_c_stops_cleanly(redis: aioredis.Redis, redis_url: str, stream_key: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *command("--redis-url", redis_url, "--stream", stream_key, "--speed", "1", "--limit", "20"),
        cwd=ROOT,
        env=feeder_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while await redis.xlen(stream_key) < 2:  # mid-replay: the poll and a first seat
            assert proc.returncode is None, "the feeder ended early"
            assert time.monotonic() < deadline, "the feeder wrote nothing"
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    stderr = err.decode()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "stopped" in stderr
    length = await redis.xlen(stream_key)
    assert 2 <= length < 21
    assert written(stderr) == length


@pytest.mark.parametrize("args", [["--speed", "-1"], ["--limit", "x"], ["--corrections", "-2"]])
async def test_bad_options(args: list[str]) -> None:
    run = await run_feeder("--print", *args)
    assert run.code == 2
    assert "usage:" in run.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "soon"])
def test_a_number_option_that_is_not_a_finite_number_in_range_is_refused(value: str) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--wait", value])
    assert exited.value.code == 2
