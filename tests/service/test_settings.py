"""Settings: every variable and option by its name, the command line over the environment,
and a bad value refused by name with exit code 2."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydantic
import pytest

from service import data
from service.settings import Settings, load_settings
from tests.conftest import TIMEOUT

UK_2019 = data.election_path("uk-2019")
A_FILE = Path(__file__)

# (variable, its value, the same on the command line, attribute, what it becomes). The
# names are written out, not read from the declarations: renaming one must fail here.
EVERY_SETTING: list[tuple[str, str, list[str], str, Any]] = [
    ("REDIS_URL", "redis://127.0.0.1:6390/2", ["--redis-url", "redis://127.0.0.1:6390/2"],
     "redis_url", "redis://127.0.0.1:6390/2"),
    ("SEATCAST_STREAM", "night:events", ["--stream", "night:events"], "stream", "night:events"),
    ("SEATCAST_REJECTED_STREAM", "night:bad", ["--rejected-stream", "night:bad"],
     "rejected_stream", "night:bad"),
    ("SEATCAST_ELECTION", str(UK_2019), ["--election", str(UK_2019)], "election", UK_2019),
    ("SEATCAST_DATA_DIR", "/tmp/sc-data", ["--data-dir", "/tmp/sc-data"], "data_dir",
     Path("/tmp/sc-data")),
    ("HOST", "::1", ["--host", "::1"], "host", "::1"),
    ("PORT", "8123", ["--port", "8123"], "port", 8123),
    ("SEATCAST_HISTORY", "50", ["--history", "50"], "history", 50),
    ("SEATCAST_QUEUE_BYTES", "4096", ["--queue-bytes", "4096"], "queue_bytes", 4096),
    ("SEATCAST_MAX_FRAME_BYTES", "2048", ["--max-frame-bytes", "2048"], "max_frame_bytes", 2048),
    ("SEATCAST_MAX_CHANNELS", "7", ["--max-channels", "7"], "max_channels", 7),
    ("SEATCAST_RATE_LIMIT", "2.5", ["--rate-limit", "2.5"], "rate_limit", 2.5),
    ("SEATCAST_PING_INTERVAL", "5", ["--ping-interval", "5"], "ping_interval", 5.0),
    ("SEATCAST_PING_TIMEOUT", "6", ["--ping-timeout", "6"], "ping_timeout", 6.0),
    ("SEATCAST_COMPRESSION", "yes", ["--compression"], "compression", True),
    ("SEATCAST_READ_BATCH", "10", ["--read-batch", "10"], "read_batch", 10),
    ("SEATCAST_LOG_LEVEL", "debug", ["--log-level", "debug"], "log_level", "debug"),
    ("SEATCAST_TOKEN_SECRET", "s3cret", ["--token-secret", "s3cret"], "token_secret", "s3cret"),
    ("SEATCAST_TOKEN_PUBLIC_KEY", str(A_FILE), ["--token-public-key", str(A_FILE)],
     "token_public_key", A_FILE),
    ("SEATCAST_REQUIRE_TOKEN", "true", ["--require-token"], "require_token", True),
    ("SEATCAST_ALLOWED_ORIGINS", "https://a.example", ["--allowed-origins", "https://a.example"],
     "allowed_origins", "https://a.example"),
    ("SEATCAST_METRICS_TOKEN", "m-token", ["--metrics-token", "m-token"], "metrics_token",
     "m-token"),
    ("SEATCAST_WORKERS", "3", ["--workers", "3"], "workers", 3),
    ("SEATCAST_PUBLISH_MAX_BYTES", "1000", ["--publish-max-bytes", "1000"],
     "publish_max_bytes", 1000),
    ("SEATCAST_CACHE_CONTROL", "no-store", ["--cache-control", "no-store"], "cache_control",
     "no-store"),
    ("SEATCAST_WEBHOOKS", "http://127.0.0.1:9/a", ["--webhooks", "http://127.0.0.1:9/a"],
     "webhooks", "http://127.0.0.1:9/a"),
    ("SEATCAST_WEBHOOK_INTERVAL", "0.5", ["--webhook-interval", "0.5"], "webhook_interval", 0.5),
    ("SEATCAST_WEBHOOK_TIMEOUT", "2", ["--webhook-timeout", "2"], "webhook_timeout", 2.0),
    ("SEATCAST_SSE_HEARTBEAT", "5", ["--sse-heartbeat", "5"], "sse_heartbeat", 5.0),
    ("SEATCAST_SSE_RETRY", "1.5", ["--sse-retry", "1.5"], "sse_retry", 1.5),
    ("SEATCAST_SSE_OPEN_RATE", "0", ["--sse-open-rate", "0"], "sse_open_rate", 0.0),
    ("SEATCAST_LONG_POLL_TIMEOUT", "9", ["--long-poll-timeout", "9"], "long_poll_timeout", 9.0),
    ("SEATCAST_LONG_POLL_WAITERS", "7", ["--long-poll-waiters", "7"], "long_poll_waiters", 7),
]  # fmt: skip
VARIABLES = [row[0] for row in EVERY_SETTING]


@pytest.fixture(autouse=True)
def no_setting_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite itself may run with REDIS_URL set, and a shell may hold others."""
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What ``load_settings`` says as it exits 2."""
    with pytest.raises(SystemExit) as exited:
        load_settings(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_the_table_covers_every_setting() -> None:
    assert {row[3] for row in EVERY_SETTING} == set(Settings.model_fields)


def test_with_nothing_set_every_setting_has_its_default() -> None:
    settings = load_settings([])

    assert settings == Settings()
    assert settings.model_dump() == {
        "redis_url": None,
        "stream": "election:events",
        "rejected_stream": None,
        "election": data.election_path("uk-2024"),
        "data_dir": Path(".seatcast"),
        "host": "127.0.0.1",
        "port": 8000,
        "history": 1000,
        "queue_bytes": 1048576,
        "max_frame_bytes": 65536,
        "max_channels": 1000,
        "rate_limit": 20.0,
        "ping_interval": 20.0,
        "ping_timeout": 20.0,
        "compression": False,
        "read_batch": 1000,
        "log_level": "info",
        "token_secret": None,
        "token_public_key": None,
        "require_token": False,
        "allowed_origins": "",
        "metrics_token": None,
        "workers": 1,
        "publish_max_bytes": 1048576,
        "cache_control": "public, max-age=1, stale-while-revalidate=5",
        "webhooks": None,
        "webhook_interval": 1.0,
        "webhook_timeout": 5.0,
        "sse_heartbeat": 15.0,
        "sse_retry": 3.0,
        "sse_open_rate": 20.0,
        "long_poll_timeout": 25.0,
        "long_poll_waiters": 1000,
    }
    assert settings.rejected == "election:events:rejected"


@pytest.mark.parametrize(("variable", "value", "argv", "attribute", "expected"), EVERY_SETTING)
def test_each_setting_is_read_from_its_variable(
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    argv: list[str],
    attribute: str,
    expected: Any,
) -> None:
    monkeypatch.setenv(variable, value)

    assert getattr(load_settings([]), attribute) == expected


@pytest.mark.parametrize(("variable", "value", "argv", "attribute", "expected"), EVERY_SETTING)
def test_each_setting_is_read_from_its_option(
    variable: str, value: str, argv: list[str], attribute: str, expected: Any
) -> None:
    assert getattr(load_settings(argv), attribute) == expected


def test_the_command_line_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8001")
    monkeypatch.setenv("SEATCAST_STREAM", "from:environment")
    monkeypatch.setenv("SEATCAST_COMPRESSION", "1")

    settings = load_settings(["--port", "8002", "--no-compression"])

    assert (settings.port, settings.compression) == (8002, False)
    assert settings.stream == "from:environment"


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "")
    monkeypatch.setenv("PORT", "")

    settings = load_settings([])

    assert (settings.redis_url, settings.port) == (None, 8000)


def test_variables_are_matched_by_their_exact_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("port", "8001")
    monkeypatch.setenv("seatcast_stream", "lower:case")

    settings = load_settings([])

    assert (settings.port, settings.stream) == (8000, "election:events")


def test_settings_built_in_code_hold_only_what_they_are_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORT", "8001")
    monkeypatch.setenv("SEATCAST_REQUIRE_TOKEN", "1")

    settings = Settings(stream="given:events", host="127.0.0.1", port=0)

    assert (settings.stream, settings.port, settings.require_token) == ("given:events", 0, False)


def test_a_named_rejected_stream_replaces_the_default() -> None:
    assert Settings(stream="s", rejected_stream="elsewhere").rejected == "elsewhere"
    assert Settings(stream="s").rejected == "s:rejected"


def test_secrets_stay_out_of_the_repr() -> None:
    shown = repr(Settings(token_secret="hs-secret", metrics_token="metrics-secret"))

    assert "hs-secret" not in shown
    assert "metrics-secret" not in shown


def test_settings_are_frozen_and_copied_with_changes() -> None:
    settings = Settings(port=0)

    with pytest.raises(pydantic.ValidationError, match="frozen"):
        settings.port = 1  # type: ignore[misc]
    assert settings.model_copy(update={"port": 1}).port == 1
    assert settings.port == 0


def test_settings_survive_pickling_for_the_workers() -> None:
    settings = Settings(token_secret="hs-secret", workers=2, election=UK_2019)

    copied = pickle.loads(pickle.dumps(settings))

    assert copied == settings
    assert (copied.token_secret, copied.rejected) == ("hs-secret", settings.rejected)


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("PORT", "abc", "PORT / --port: bad value 'abc': input should be a valid integer"),
        ("PORT", "70000", "PORT / --port: bad value '70000': input should be less than or"),
        ("SEATCAST_HISTORY", "1.5", "SEATCAST_HISTORY / --history: bad value '1.5'"),
        ("SEATCAST_RATE_LIMIT", "lots", "SEATCAST_RATE_LIMIT / --rate-limit: bad value 'lots'"),
        ("SEATCAST_COMPRESSION", "maybe", "SEATCAST_COMPRESSION / --compression: bad value"),
        (
            "SEATCAST_LOG_LEVEL",
            "loud",
            "SEATCAST_LOG_LEVEL / --log-level: bad value 'loud': input should be 'debug'",
        ),
        (
            "SEATCAST_ELECTION",
            "/nonexistent/uk.json",
            "SEATCAST_ELECTION / --election: bad value '/nonexistent/uk.json': path does not "
            "point to a file",
        ),
        (
            "SEATCAST_TOKEN_PUBLIC_KEY",
            "/nonexistent/key.pem",
            "SEATCAST_TOKEN_PUBLIC_KEY / --token-public-key: bad value '/nonexistent/key.pem'",
        ),
    ],
)
def test_a_bad_variable_exits_2_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    said: str,
) -> None:
    monkeypatch.setenv(variable, value)

    assert said in refusal([], capsys)


def test_a_bad_option_exits_2_naming_each_bad_setting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    said = refusal(["--workers", "two", "--election", "/nonexistent/uk.json"], capsys)

    assert "SEATCAST_WORKERS / --workers: bad value 'two'" in said
    assert "SEATCAST_ELECTION / --election: bad value '/nonexistent/uk.json'" in said


def test_an_unknown_option_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert "unrecognized arguments: --colour" in refusal(["--colour", "red"], capsys)


def service_command(argv: list[str], **environment: str) -> subprocess.CompletedProcess[str]:
    """``python -m service`` run to its end, in an environment without any setting."""
    clean = {name: value for name, value in os.environ.items() if name not in VARIABLES}
    return subprocess.run(
        [sys.executable, "-m", "service", *argv],
        env={**clean, **environment},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_the_service_refuses_bad_values_with_exit_2_and_no_traceback() -> None:
    ended = service_command(["--election", "/nonexistent/uk.json"], PORT="abc")

    assert ended.returncode == 2
    assert "PORT / --port: bad value 'abc'" in ended.stderr
    assert "SEATCAST_ELECTION / --election: bad value '/nonexistent/uk.json'" in ended.stderr
    assert "Traceback" not in ended.stderr


def test_help_lists_each_option_with_its_variable_and_default() -> None:
    ended = service_command(["--help"])

    assert ended.returncode == 0
    shown = " ".join(ended.stdout.split())  # argparse wraps the lines
    for variable, _, argv, _, _ in EVERY_SETTING:
        assert argv[0] in shown
        assert f"[{variable}" in shown
    assert "--compression, --no-compression" in shown
    assert "[PORT, default: 8000]" in shown
    assert "[SEATCAST_COMPRESSION, default: off]" in shown
    assert "[SEATCAST_CACHE_CONTROL, default: public," in shown
