"""The load generator (clients/loadgen) run as a real process against a real Redis.

These are smoke tests: small loads that must arrive complete and in order, and a report with
every field. They assert nothing about speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from clients.loadgen.histogram import Histogram
from clients.loadgen.publisher import load_night, plan
from clients.loadgen.subscribers import channels_for

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 80.0


def loadgen(redis_url: str, tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / "report.json"
    command = [sys.executable, "-m", "clients.loadgen", "--redis-url", redis_url]
    command += ["--json-out", str(out), "--timeout", "60", *args]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
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
    for key in ("rss_kb_before", "rss_kb_idle", "rss_kb_after", "cpu_s"):
        assert usage[key] >= 0
    assert usage["rss_kb_per_connection"] is not None
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


@pytest.mark.slow
def test_compare_measures_seatcast_and_both_references_alike(
    redis_url: str, tmp_path: Path
) -> None:
    code, report, output = loadgen(
        redis_url, tmp_path, "--compare", "--clients", "50", "--processes", "2",
        "--rate", "20", "--events", "20", "--check",
    )  # fmt: skip
    assert code == 0, output
    assert [run["server"] for run in report["runs"]] == ["seatcast", "naive", "broadcast"]
    for run in report["runs"]:
        assert_complete(run, 50)
    assert set(report["ratios"]) == {"naive", "broadcast"}
    assert set(report["ratios"]["broadcast"]) == {
        "p99_latency",
        "cpu_per_delivery",
        "deliveries_per_s",
    }
    assert "websockets broadcast()" in output


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
    histogram, other = Histogram(), Histogram()
    for i in range(1, 1001):
        (histogram if i % 2 else other).add(float(i))
    histogram.merge(other)
    assert histogram.count == 1000
    assert 500 <= histogram.quantile(0.5) <= 501  # type: ignore[operator]
    assert 990 <= histogram.quantile(0.99) <= 991  # type: ignore[operator]
    assert histogram.quantile(1.0) == histogram.max == 1000.0
