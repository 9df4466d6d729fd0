"""From raw outcomes to figures: the JSON report, the table, and the ratios between servers."""

from __future__ import annotations

import os
import platform
import time
from array import array
from typing import Any

from rich.console import Console
from rich.table import Table

from clients.loadgen import histogram
from clients.loadgen.runner import Outcome
from clients.loadgen.servers import LABELS


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def summarize(outcome: Outcome) -> dict[str, Any]:
    """One run as a JSON-ready dict (the ``runs`` entries of the report)."""
    load, readies, reports = outcome.load, outcome.readies, outcome.reports
    connect = array("f")
    failures: dict[str, int] = {}
    examples: list[str] = []
    for ready in readies:
        connect.frombytes(ready.connect_ms)
        for reason, count in ready.failures.items():
            failures[reason] = failures.get(reason, 0) + count
        examples.extend(ready.examples)
    connect_ms = histogram.of(connect)
    latency = histogram.merged(report.latency for report in reports)
    closed: dict[str, int] = {}
    errors: dict[str, int] = {}
    http: dict[str, int] = {}
    totals = dict.fromkeys(
        (
            "delivered", "expected", "bytes", "gaps", "out_of_order", "resyncs", "hellos",
            "unexpected", "missing", "lost", "undelivered", "superseded", "incomplete",
        ),
        0,
    )  # fmt: skip
    last_receive = 0.0
    for report in reports:
        for key in totals:
            totals[key] += getattr(report, key)
        for close_code, count in report.closed.items():
            closed[str(close_code)] = closed.get(str(close_code), 0) + count
        for error_code, count in report.errors.items():
            errors[error_code] = errors.get(error_code, 0) + count
        for answer, count in report.http.items():
            http[answer] = http.get(answer, 0) + count
        last_receive = max(last_receive, report.last_receive)
    published = outcome.published
    span = last_receive - published.started if published and last_receive else 0.0
    connected = sum(r.connected for r in readies)
    usage: dict[str, Any] = {}
    before, idle, after = outcome.before, outcome.idle, outcome.after
    if before and idle:
        usage["rss_kb_before"] = before.rss_kb
        usage["rss_kb_idle"] = idle.rss_kb
        usage["rss_kb_per_connection"] = _round(
            (idle.rss_kb - before.rss_kb) / connected if connected else None
        )
        usage["processes"] = idle.processes
    if idle and after:
        usage["rss_kb_after"] = after.rss_kb
        usage["cpu_s"] = round(after.cpu_s - idle.cpu_s, 3)
        usage["cpu_us_per_delivery"] = _round(
            (after.cpu_s - idle.cpu_s) * 1e6 / totals["delivered"] if totals["delivered"] else None
        )
    requests = sum(count for answer, count in http.items() if answer.isdigit())
    if requests and "cpu_s" in usage:
        usage["cpu_us_per_request"] = _round(usage["cpu_s"] * 1e6 / requests)
    if outcome.relay_idle and outcome.relay_after:
        # Redis pub/sub: the relay that XREADs and PUBLISHes is not part of the server's CPU
        # (which is redis-server's alone); it is reported here, beside it.
        usage["relay_cpu_s"] = round(outcome.relay_after.cpu_s - outcome.relay_idle.cpu_s, 3)
    loadgen_cpu = [round(r.cpu_s, 2) for r in reports]
    machine_share = _machine_share(
        outcome, usage.get("cpu_s"), usage.get("relay_cpu_s"), sum(loadgen_cpu)
    )
    integrity: dict[str, Any] = {
        key: totals[key]
        for key in (
            "lost",
            "undelivered",
            "gaps",
            "out_of_order",
            "resyncs",
            "superseded",
            "missing",
            "incomplete",
        )
    }
    integrity.update(closed=closed, errors=errors, unexpected=totals["unexpected"])
    integrity["hellos_again"] = totals["hellos"]
    ok = (
        outcome.error is None
        and not outcome.worker_errors
        and connected == load.clients
        and not closed
        and all(
            integrity[k] == 0 for k in ("lost", "undelivered", "gaps", "out_of_order", "incomplete")
        )
    )
    transport = outcome.target.transport
    return {
        "server": outcome.target.kind,
        "transport": transport,
        "key": outcome.target.kind if transport == "ws" else f"{outcome.target.kind}-{transport}",
        "label": LABELS[outcome.target.kind] + TRANSPORT_LABELS[transport],
        "url": outcome.url,
        "client": outcome.link,
        "stream": outcome.stream,
        "ok": ok,
        "error": outcome.error,
        "worker_errors": outcome.worker_errors,
        "server_exit": outcome.server_exit,
        "clients": {
            "requested": load.clients,
            "connected": connected,
            "failures": failures,
            "failure_examples": list(dict.fromkeys(examples))[:10],
            "setup_s": _round(max((r.setup_s for r in readies), default=0.0)),
            "open_files_limit_per_process": min(
                (r.open_files_limit for r in readies), default=None
            ),
        },
        "connect_ms": {
            "p50": _round(histogram.quantile(connect_ms, 0.5)),
            "p99": _round(histogram.quantile(connect_ms, 0.99)),
            "max": _round(histogram.maximum(connect_ms)),
        },
        "published": {
            "events": len(published.ids) if published else 0,
            "seconds": _round(published.finished - published.started, 3) if published else None,
            "rate": _round(published.rate, 1) if published else None,
        },
        "delivered": totals["delivered"],
        "expected": totals["expected"],
        "bytes_per_message": _round(
            totals["bytes"] / totals["delivered"] if totals["delivered"] else None, 1
        ),
        "deliveries_per_s": _round(totals["delivered"] / span if span > 0 else None, 0),
        "latency_ms": {
            "p50": _round(histogram.quantile(latency, 0.5)),
            "p95": _round(histogram.quantile(latency, 0.95)),
            "p99": _round(histogram.quantile(latency, 0.99)),
            "max": _round(histogram.maximum(latency)),
            "mean": _round(histogram.mean(latency)),
        },
        "integrity": integrity,
        "polls": _polls(http, outcome),
        "server_usage": usage,
        "drain_s": _round(max((r.drain_s for r in reports), default=0.0)),
        "loadgen_cpu_s": loadgen_cpu,
        "machine_cpu": machine_share,
    }


TRANSPORT_LABELS = {"ws": "", "sse": " (SSE)", "poll": " (polling)"}


def _polls(http: dict[str, int], outcome: Outcome) -> dict[str, Any] | None:
    """Pollers' requests and answers; with the publishing time, requests per second."""
    if outcome.target.transport != "poll":
        return None
    requests = sum(count for answer, count in http.items() if answer.isdigit())
    published = outcome.published
    seconds = published.finished - published.started if published else 0.0
    return {
        "requests": requests,
        "answers": dict(sorted(http.items())),
        "not_modified_share": _round(http.get("304", 0) / requests if requests else None, 3),
        "publish_window_s": _round(seconds, 2),
    }


def _machine_share(
    outcome: Outcome, server_s: float | None, relay_s: float | None, clients_s: float
) -> dict[str, Any]:
    """Where the machine's CPU went while the run measured: this run's parts and the rest."""
    if outcome.window is None:
        return {}
    first, last = outcome.window
    share: dict[str, Any] = {
        "window_s": round(last.monotonic - first.monotonic, 2),
        "busy_core_s": round(last.busy_s - first.busy_s, 2),
        "interrupts_s": round(last.interrupts_s - first.interrupts_s, 2),
        "server_s": server_s,
        "relay_s": relay_s,
        "clients_s": round(clients_s, 2),
        "publisher_s": round(last.publisher_s - first.publisher_s, 2),
        "redis_s": None,
    }
    if first.redis_s is not None and last.redis_s is not None:
        share["redis_s"] = round(last.redis_s - first.redis_s, 2)
    # Softirq time is reported for what it shows (loopback TCP's share) but not subtracted:
    # the kernel also charges it to whichever process a tick interrupted.
    parts = ("server_s", "relay_s", "clients_s", "publisher_s", "redis_s")
    ours = sum(share[k] or 0.0 for k in parts)
    share["others_s"] = round(max(0.0, share["busy_core_s"] - ours), 2)
    return share


def ratios(runs: list[dict[str, Any]], base: str = "seatcast") -> dict[str, dict[str, Any]]:
    """Per other run, keyed by its key: ``numerator / denominator`` of p99, CPU per delivery,
    deliveries/s and RSS per connection. Against a reference server, seatcast's over its;
    seatcast over another transport (SSE, polling), that transport's over the websocket's,
    as the targets for them are put."""
    by_key = {run.get("key", run["server"]): run for run in runs}
    ours = by_key.get(base)
    if ours is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for key, theirs in by_key.items():
        if key == base:
            continue
        transport = theirs["server"] == ours["server"]
        top, bottom = (theirs, ours) if transport else (ours, theirs)
        out[key] = {
            "numerator": top["label"],
            "denominator": bottom["label"],
            "p99_latency": _ratio(top["latency_ms"]["p99"], bottom["latency_ms"]["p99"]),
            "cpu_per_delivery": _ratio(
                top["server_usage"].get("cpu_us_per_delivery"),
                bottom["server_usage"].get("cpu_us_per_delivery"),
            ),
            "deliveries_per_s": _ratio(top["deliveries_per_s"], bottom["deliveries_per_s"]),
            "rss_per_connection": _ratio(
                top["server_usage"].get("rss_kb_per_connection"),
                bottom["server_usage"].get("rss_kb_per_connection"),
            ),
        }
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _mb(kb: Any) -> str:
    return "-" if kb is None else f"{kb / 1024:,.1f}"


def rows(run: dict[str, Any], relay: bool = False) -> list[tuple[str, str]]:
    """The table's rows for one run: (what, figure); ``relay``: with the relay's CPU row."""
    clients, usage, integrity = run["clients"], run["server_usage"], run["integrity"]
    latency, connect, published = run["latency_ms"], run["connect_ms"], run["published"]
    rss = " / ".join(_mb(usage.get(k)) for k in ("rss_kb_before", "rss_kb_idle", "rss_kb_after"))
    closed = sum(integrity["closed"].values())
    machine = run["machine_cpu"]
    others = f"{_fmt(machine.get('others_s'), 1)} / {_fmt(machine.get('window_s'), 1)}"
    return [
        ("connected", f"{_fmt(clients['connected'])} / {_fmt(clients['requested'])}"),
        ("connect p50 / p99 (ms)", f"{_fmt(connect['p50'])} / {_fmt(connect['p99'])}"),
        ("events published (per s)", f"{_fmt(published['events'])} ({_fmt(published['rate'])})"),
        ("delivered / expected", f"{_fmt(run['delivered'])} / {_fmt(run['expected'])}"),
        ("deliveries per s", _fmt(run["deliveries_per_s"], 0)),
        ("latency p50 (ms)", _fmt(latency["p50"])),
        ("latency p95 (ms)", _fmt(latency["p95"])),
        ("latency p99 (ms)", _fmt(latency["p99"])),
        ("latency max (ms)", _fmt(latency["max"])),
        ("lost / gaps / out of order", "{lost} / {gaps} / {out_of_order}".format(**integrity)),
        ("undelivered at the end", _fmt(integrity["undelivered"])),
        ("resyncs / superseded", "{resyncs} / {superseded}".format(**integrity)),
        ("incomplete / closed by server", f"{integrity['incomplete']} / {closed}"),
        ("message size (bytes)", _fmt(run["bytes_per_message"], 0)),
        ("server RSS before / idle / after (MB)", rss),
        ("server RSS per connection (KB)", _fmt(usage.get("rss_kb_per_connection"))),
        ("server CPU (s)", _fmt(usage.get("cpu_s"), 2)),
        ("server CPU per delivery (us)", _fmt(usage.get("cpu_us_per_delivery"), 2)),
        ("server CPU per request (us)", _fmt(usage.get("cpu_us_per_request"), 2)),
        ("requests (304 share)", _poll_figures(run.get("polls"))),
        *(
            [("relay CPU, not in server CPU (s)", _fmt(usage.get("relay_cpu_s"), 2))]
            if relay
            else []
        ),
        ("client processes' CPU (s)", " + ".join(_fmt(c, 1) for c in run["loadgen_cpu_s"])),
        ("Redis CPU (s)", _fmt(machine.get("redis_s"), 2)),
        ("machine in softirq (s)", _fmt(machine.get("interrupts_s"), 2)),
        ("other processes' CPU (s) / window (s)", others),
    ]


def _poll_figures(polls: dict[str, Any] | None) -> str:
    if not polls:
        return "-"
    share = polls["not_modified_share"]
    return f"{_fmt(polls['requests'])} ({'-' if share is None else f'{share:.0%}'})"


def render(report: dict[str, Any], console: Console) -> None:
    runs = report["runs"]
    params = report["params"]
    title = (
        f"{params['clients']:,} clients / {params['processes']} processes, mix {params['mix']}, "
        f"{params['events']} events at "
        + (f"{params['rate']:g}/s" if params["rate"] else "full speed")
    )
    table = Table(title=title)
    table.add_column("")
    for run in runs:
        table.add_column(run["label"], justify="right")
    relay = any(run["server_usage"].get("relay_cpu_s") is not None for run in runs)
    cells = [rows(run, relay) for run in runs]
    for i, (name, _) in enumerate(cells[0] if cells else []):
        table.add_row(name, *(column[i][1] for column in cells))
    table.add_row("all delivered, in order", *("yes" if run["ok"] else "NO" for run in runs))
    console.print(table)
    for run in runs:
        for problem in [run["error"], *run["worker_errors"]]:
            if problem:
                console.print(f"[red]{run['label']}: {problem}[/red]")
        if run["clients"]["failures"]:
            console.print(f"{run['label']}: connection failures {run['clients']['failures']}")
            for example in run["clients"]["failure_examples"][:3]:
                console.print(f"  e.g. {example}")
    for figures in report.get("ratios", {}).values():
        console.print(
            f"{figures['numerator']} / {figures['denominator']}: "
            f"p99 latency x{_fmt(figures['p99_latency'], 2)}, "
            f"CPU per delivery x{_fmt(figures['cpu_per_delivery'], 2)}, "
            f"deliveries/s x{_fmt(figures['deliveries_per_s'], 2)}, "
            f"RSS per connection x{_fmt(figures['rss_per_connection'], 2)}"
        )
