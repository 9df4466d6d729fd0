"""The load generator (clients/loadgen) run as a real process against a real Redis.

These are smoke tests: small loads that must arrive complete and in order, and a report with
every field. They assert nothing about speed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from clients.loadgen import histogram, servers
from clients.loadgen.cli import url_for
from clients.loadgen.connections import Client, RespLink, Totals, resp_command
from clients.loadgen.http_links import SseLink, rest_path
from clients.loadgen.publisher import load_night, plan
from clients.loadgen.subscribers import Report, channels_for
from service.settings import Settings
from tests.conftest import TIMEOUT
from tests.nginx import require_nginx, run_nginx
from tests.service import conftest as service_fixtures
from tests.service.conftest import run_service

make_settings = service_fixtures.make_settings

ROOT = Path(__file__).resolve().parents[2]
# The load generator bounds its own waits (--timeout); the run gets a little more.
LOADGEN_SECONDS = TIMEOUT * 4
needs_redis_server = pytest.mark.skipif(
    servers.redis_binary() is None, reason="no redis-server binary for the Redis pub/sub reference"
)


def loadgen(redis_url: str, tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / "report.json"
    command = [sys.executable, "-m", "clients.loadgen", "--redis-url", redis_url]
    command += ["--json-out", str(out), "--timeout", str(LOADGEN_SECONDS), *args]
    done = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LOADGEN_SECONDS + TIMEOUT,
        check=False,
    )
    report = json.loads(out.read_text()) if out.exists() else {}
    return done.returncode, report, done.stdout + done.stderr


def assert_complete(run: dict[str, Any], clients: int) -> None:
    assert run["error"] is None
    assert run["clients"]["connected"] == clients
    integrity = run["integrity"]
    for key in ("lost", "undelivered", "gaps", "out_of_order", "incomplete", "resyncs", "missing"):
        assert integrity[key] == 0, (key, integrity)
    assert integrity["closed"] == {}
    assert run["delivered"] == run["expected"] > 0
    assert run["ok"] is True


def assert_nothing_lost_by_polling(run: dict[str, Any], clients: int) -> None:
    """A poller sees states, not every change: what it skipped was superseded, never lost."""
    assert run["error"] is None
    assert run["clients"]["connected"] == clients
    for key in ("lost", "undelivered", "gaps", "out_of_order", "incomplete"):
        assert run["integrity"][key] == 0, (key, run["integrity"])
    assert run["ok"] is True


def test_300_clients_over_two_processes_receive_every_event_in_order(
    redis_url: str, tmp_path: Path
) -> None:
    code, report, output = loadgen(
        redis_url, tmp_path, "--clients", "300", "--processes", "2", "--rate", "20",
        "--events", "30", "--mix", "mixed", "--check",
    )  # fmt: skip
    assert code == 0, output
    assert report["params"]["clients"] == 300
    assert report["params"]["events"] == 30
    assert set(report["machine"]) >= {"cpus", "load_average", "open_files_limit"}
    [run] = report["runs"]
    assert run["server"] == "seatcast"
    assert_complete(run, 300)
    assert run["published"]["events"] == 30
    for key in ("p50", "p95", "p99", "max"):
        assert run["latency_ms"][key] is not None
    assert run["latency_ms"]["p50"] <= run["latency_ms"]["p99"] <= run["latency_ms"]["max"]
    assert run["connect_ms"]["p50"] is not None and run["connect_ms"]["p99"] is not None
    assert run["deliveries_per_s"] > 0
    usage = run["server_usage"]
    # Read from the service's own process: a Python process holding the election is tens
    # of MB (a failed /proc read would give 0), and it is one process (no workers).
    for key in ("rss_kb_before", "rss_kb_idle", "rss_kb_after"):
        assert usage[key] > 10_000, (key, usage)
    assert usage["processes"] == 1
    # The deliveries cost the service CPU time, counted between idle and after.
    assert usage["cpu_s"] > 0
    assert usage["cpu_us_per_delivery"] == pytest.approx(
        usage["cpu_s"] * 1e6 / run["delivered"], rel=0.01
    )
    assert usage["rss_kb_per_connection"] == pytest.approx(
        (usage["rss_kb_idle"] - usage["rss_kb_before"]) / 300, abs=0.1
    )
    assert "latency p99 (ms)" in output


def test_the_websockets_asyncio_client_measures_the_same_way(
    redis_url: str, tmp_path: Path
) -> None:
    code, report, output = loadgen(
        redis_url, tmp_path, "--client", "asyncio", "--clients", "60", "--rate", "20",
        "--events", "20", "--mix", "national+constituency", "--check",
    )  # fmt: skip
    assert code == 0, output
    assert report["params"]["client"] == "asyncio"
    assert_complete(report["runs"][0], 60)


def test_sse_subscribers_and_pollers_beside_the_websocket_lose_nothing(
    redis_url: str, tmp_path: Path
) -> None:
    code, report, output = loadgen(
        redis_url, tmp_path, "--transport", "ws", "--transport", "sse", "--transport", "poll",
        "--poll-interval", "0.5", "--clients", "80", "--processes", "2", "--rate", "20",
        "--events", "20", "--mix", "mixed", "--check",
    )  # fmt: skip
    assert code == 0, output
    ws, sse, poll = report["runs"]
    assert [(r["transport"], r["client"]) for r in report["runs"]] == [
        ("ws", "raw"), ("sse", "sse"), ("poll", "poll"),
    ]  # fmt: skip
    assert sse["url"].startswith("http://127.0.0.1:") and "/ws" not in sse["url"]
    assert_complete(ws, 80)
    assert_complete(sse, 80)
    assert_nothing_lost_by_polling(poll, 80)
    assert poll["polls"]["requests"] > 0
    assert set(poll["polls"]["answers"]) >= {"200"}
    assert set(report["ratios"]) == {"seatcast-sse", "seatcast-poll"}
    assert report["ratios"]["seatcast-sse"]["denominator"] == "seatcast"
    assert "seatcast (SSE) / seatcast: p99 latency" in output


def test_long_polling_pollers_see_every_change(redis_url: str, tmp_path: Path) -> None:
    code, report, output = loadgen(
        redis_url, tmp_path, "--transport", "poll", "--poll-wait", "--clients", "40",
        "--processes", "2", "--rate", "10", "--events", "10", "--mix", "mixed", "--check",
    )  # fmt: skip
    assert code == 0, output
    [run] = report["runs"]
    assert report["params"]["poll_wait"] is True
    assert_nothing_lost_by_polling(run, 40)
    assert run["polls"]["answers"].get("200", 0) >= run["delivered"] > 0


@needs_redis_server
def test_redis_pubsub_subscribers_over_resp_receive_every_event_in_order(
    redis_url: str, tmp_path: Path
) -> None:
    code, report, output = loadgen(
        redis_url, tmp_path, "--server", "redis", "--clients", "40", "--processes", "2",
        "--rate", "20", "--events", "12", "--mix", "mixed", "--check",
    )  # fmt: skip
    assert code == 0, output
    [run] = report["runs"]
    assert (run["server"], run["label"], run["client"]) == ("redis", "Redis pub/sub (C)", "resp")
    assert run["url"].startswith("redis://127.0.0.1:")
    assert_complete(run, 40)
    assert run["server_exit"] == 0
    assert run["server_usage"]["rss_kb_idle"] > 0
    assert run["server_usage"]["relay_cpu_s"] is not None
    assert "relay CPU, not in server CPU" in output


@pytest.mark.slow
def test_compare_measures_seatcast_and_the_references_alike(redis_url: str, tmp_path: Path) -> None:
    code, report, output = loadgen(
        redis_url, tmp_path, "--compare", "--clients", "50", "--processes", "2",
        "--rate", "20", "--events", "20", "--check",
    )  # fmt: skip
    assert code == 0, output
    references = ["naive", "broadcast"] + (["redis"] if servers.redis_binary() else [])
    assert [run["server"] for run in report["runs"]] == ["seatcast", *references]
    for run in report["runs"]:
        assert_complete(run, 50)
    assert set(report["ratios"]) == set(references)
    for figures in report["ratios"].values():
        assert figures["numerator"] == "seatcast"
        assert set(figures) >= {"p99_latency", "cpu_per_delivery", "deliveries_per_s"}
    assert "websockets broadcast()" in output


def delta(channel: str, seq: str, prev: str) -> bytes:
    message = {"type": "delta", "channel": channel, "seq": seq, "prev": prev, "patch": {}}
    return json.dumps(message, separators=(",", ":")).encode()


def test_without_a_snapshot_the_first_message_starts_the_chain_and_nothing_else() -> None:
    totals = Totals()
    client = Client(["national"], totals)
    client.confirmed("national")
    assert client.ready.is_set()
    client.on_message(delta("national", "1000-5", "1000-1"), 1.0)  # prev: before we joined
    client.on_message(delta("national", "1001-0", "1000-5"), 1.0)
    assert (totals.delivered, totals.gaps) == (2, 0)
    client.on_message(delta("national", "1003-0", "1002-0"), 1.0)  # 1002-0 never came
    assert totals.gaps == 1 and client.chains["national"].gapped


def test_a_websocket_chain_still_needs_its_snapshot() -> None:
    totals = Totals()
    client = Client(["national"], totals)
    client.on_message(delta("national", "1000-5", "1000-1"), 1.0)  # before any snapshot
    assert totals.gaps == 1


def test_what_a_chain_begun_without_a_snapshot_misses_at_its_start_is_lost() -> None:
    # Three events were published on each channel; each chain saw only the last two, intact.
    finals = {"national": (3, "1002-0"), "constituency:Bath": (3, "1002-0")}
    pubsub, websocket = Client(finals, Totals()), Client(finals, Totals())
    for channel in finals:
        pubsub.confirmed(channel)
        websocket.on_message(
            json.dumps({"type": "snapshot", "channel": channel, "seq": "1000-0"}).encode(), 1.0
        )
        for client in (pubsub, websocket):
            client.on_message(delta(channel, "1001-0", "1000-0"), 1.0)
            client.on_message(delta(channel, "1002-0", "1001-0"), 1.0)
    over_pubsub, over_websocket = Report(worker=0), Report(worker=0)
    over_pubsub.account(pubsub, finals)
    over_websocket.account(websocket, finals)
    assert (over_pubsub.lost, over_pubsub.superseded) == (2, 0)
    # A websocket server may merge a slow client's deltas: the same shortfall is superseded.
    assert (over_websocket.lost, over_websocket.superseded) == (0, 2)


async def test_the_resp_link_reads_pushes_split_anywhere() -> None:
    totals = Totals()
    client = Client(["national", "constituency:Bath and North East Somerset"], totals)
    link = RespLink(client)
    payload = delta("national", "1001-0", "1000-0")
    stream = b"".join(
        [
            b"*3\r\n$9\r\nsubscribe\r\n$8\r\nnational\r\n:1\r\n",
            b"*3\r\n$9\r\nsubscribe\r\n$41\r\nconstituency:Bath and North East Somerset\r\n:2\r\n",
            b"*3\r\n$7\r\nmessage\r\n$8\r\nnational\r\n$%d\r\n%b\r\n" % (len(payload), payload),
            b"-ERR something\r\n",
        ]
    )
    for i in range(len(stream)):  # one byte at a time
        link.data_received(stream[i : i + 1])
    assert client.ready.is_set()
    assert (totals.delivered, totals.gaps, totals.unexpected) == (1, 0, 0)
    assert totals.errors == {"redis ERR": 1}
    assert resp_command("SUBSCRIBE", "a b") == b"*2\r\n$9\r\nSUBSCRIBE\r\n$3\r\na b\r\n"


async def test_the_sse_link_reads_chunked_events_split_anywhere() -> None:
    totals = Totals()
    client = Client(["national"], totals)
    link = SseLink("127.0.0.1", 1, "/sse?channels=national", client)
    snapshot = b'{"type":"snapshot","channel":"national","seq":"1000-0","data":{}}'
    events = [
        b'retry: 2900\nevent: hello\ndata: {"type":"hello","epoch":"1-0","seq":"1000-0"}\n\n',
        b"event: snapshot\ndata: %b\nid: 1-0:1000-0\n\n" % snapshot,
        b":\n\n",
        b"event: delta\ndata: %b\nid: 1-0:1001-0\n\n" % delta("national", "1001-0", "1000-0"),
        b"event: delta\ndata: %b\nid: 1-0:999-0\n\n" % delta("national", "1002-0", "1001-0"),
    ]
    body = b"".join(b"%x\r\n%b\r\n" % (len(event), event) for event in events)
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    stream = head + body
    for i in range(len(stream)):  # one byte at a time
        link.data_received(stream[i : i + 1])
    assert link.opened.done() and client.ready.is_set()
    assert (totals.delivered, totals.gaps, totals.unexpected) == (2, 0, 0)
    assert totals.errors == {"id_backwards": 1}


async def test_the_sse_link_refuses_what_is_not_an_event_stream() -> None:
    client = Client(["national"], Totals())
    link = SseLink("127.0.0.1", 1, "/sse?channels=national", client)
    link.data_received(b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\n\r\n")
    with pytest.raises(ConnectionError, match=r"stream refused: HTTP/1\.1 429"):
        await link.opened


def test_a_poller_reads_states_and_the_log_and_tells_a_gap() -> None:
    totals = Totals()
    client = Client(["national", "declarations"], totals)
    client.on_state("national", "1000-0", 1.0)
    client.on_log("declarations", "1000-0", ["1000-0"], 1.0)
    assert client.ready.is_set() and totals.delivered == 0
    client.on_state("national", "1000-0", 1.0)  # unchanged
    client.on_state("national", "1003-0", 1.0)  # 1001-0 and 1002-0 superseded
    client.on_state("national", "1002-0", 1.0)  # a stale answer after a fresher one
    assert (totals.delivered, totals.out_of_order) == (1, 1)
    client.on_log("declarations", "1002-0", ["1000-0", "1001-0", "1002-0"], 1.0)
    assert (totals.delivered, totals.gaps) == (3, 0)
    later = [f"{n}-0" for n in range(1010, 1030)]  # a full list that does not reach 1002-0
    client.on_log("declarations", later[-1], later, 1.0)
    assert totals.gaps == 1 and client.chains["declarations"].gapped
    assert rest_path("constituency:E14001425") == "/api/constituencies/E14001425"
    assert rest_path("region:north-east") == "/api/regions/north-east"


@pytest.mark.parametrize(
    ("given", "transport", "used"),
    [
        ("http://127.0.0.1:8080", "ws", "ws://127.0.0.1:8080/ws"),
        ("ws://127.0.0.1:8080/ws", "sse", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/edge/", "poll", "http://127.0.0.1:8080/edge"),
        ("ws://127.0.0.1:8080/ws", "ws", "ws://127.0.0.1:8080/ws"),
    ],
)
def test_one_url_serves_every_transport(given: str, transport: str, used: str) -> None:
    assert url_for(given, transport) == used


def test_a_non_loopback_target_is_refused(redis_url: str, tmp_path: Path) -> None:
    code, _, output = loadgen(
        redis_url, tmp_path, "--url", "ws://10.1.2.3:8000/ws", "--stream", "rehearsal"
    )
    assert code == 2
    assert "loopback" in output


def test_an_existing_stream_is_never_written_to(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"test:loadgen:{tmp_path.name}"
    client.xadd(key, {"event": "{}"})
    try:
        code, report, output = loadgen(redis_url, tmp_path, "--stream", key, "--clients", "5")
        assert code == 1, output
        assert "already exists" in report["runs"][0]["error"]
        assert client.xlen(key) == 1
    finally:
        client.delete(key)
        client.close()


@pytest.mark.parametrize("mix", ["national", "declarations", "national+constituency", "mixed"])
def test_each_mix_gives_the_same_channels_for_the_same_seed(mix: str) -> None:
    seats = load_night().seats
    first = [channels_for(i, mix, 7, seats) for i in range(200)]
    assert first == [channels_for(i, mix, 7, seats) for i in range(200)]
    kinds = {c.partition(":")[0] for channels in first for c in channels}
    expected = {
        "national": {"national"},
        "declarations": {"declarations"},
        "national+constituency": {"national", "constituency"},
        "mixed": {"national", "constituency", "declarations"},
    }[mix]
    assert kinds == expected


def test_more_events_than_the_night_repeat_it_with_rising_revisions() -> None:
    night = load_night()
    size = len(night.declarations)
    events = plan(night, 2 * size + 1)
    first, again, third = (json.loads(events[i][1]) for i in (0, size, 2 * size))
    assert first["constituency"] == again["constituency"] == third["constituency"]
    assert (first["revision"], again["revision"], third["revision"]) == (1, 2, 3)
    top = max(v["votes"] for v in first["candidates"])
    assert max(v["votes"] for v in again["candidates"]) == top + 1
    assert max(v["votes"] for v in third["candidates"]) == top + 2


def test_the_histogram_never_reports_a_quantile_below_the_true_one() -> None:
    # Two client processes' histograms, sent encoded and added up as the parent does.
    odd, even = (histogram.of(float(i) for i in range(first, 1001, 2)) for first in (1, 2))
    merged = histogram.merged([histogram.encode(odd), histogram.encode(even)])
    assert merged.get_total_count() == 1000
    assert 500 <= histogram.quantile(merged, 0.5) <= 501  # type: ignore[operator]
    assert 990 <= histogram.quantile(merged, 0.99) <= 991  # type: ignore[operator]
    # hdrhistogram holds 1,000 ms to within 0.1 %, never below it.
    assert histogram.quantile(merged, 1.0) == histogram.maximum(merged)
    assert 1000.0 <= histogram.maximum(merged) <= 1001.0  # type: ignore[operator]


def test_a_latency_below_zero_counts_as_zero_and_an_empty_histogram_has_no_figures() -> None:
    # An entry's millisecond can be ahead of this clock: Redis keeps IDs rising if it steps back.
    recorded = histogram.of([-0.4, 0.0])
    assert (recorded.get_total_count(), histogram.maximum(recorded)) == (2, 0.0)
    empty = histogram.merged([])
    figures = [histogram.quantile(empty, 0.99), histogram.maximum(empty), histogram.mean(empty)]
    assert figures == [None, None, None]


async def test_through_nginx_sse_subscribers_and_pollers_lose_nothing(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    require_nginx()
    # Every subscriber comes from 127.0.0.1: no limit on how fast one address opens streams.
    settings = make_settings(sse_open_rate=0)
    assert settings.redis_url is not None
    async with run_service(settings) as origin, run_nginx(origin.port) as proxy:
        out = tmp_path / "report.json"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "clients.loadgen", "--redis-url", settings.redis_url,
            "--url", proxy.url, "--stream", settings.stream, "--server-pid", str(os.getpid()),
            "--transport", "sse", "--transport", "poll", "--poll-interval", "0.5",
            "--clients", "60", "--processes", "2", "--rate", "20", "--events", "20",
            "--mix", "mixed", "--json-out", str(out), "--timeout", "60", "--check",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(process.communicate(), LOADGEN_SECONDS + TIMEOUT)
    assert process.returncode == 0, output.decode()
    sse, poll = json.loads(out.read_text())["runs"]
    assert sse["url"] == poll["url"] == proxy.url
    assert_complete(sse, 60)
    assert_nothing_lost_by_polling(poll, 60)
    # nginx said which answers came from its cache.
    assert any(answer.startswith("cache ") for answer in poll["polls"]["answers"])
