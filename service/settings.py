"""Configuration: each setting from the environment, overridable on the command line.

One declaration per setting: its environment variable is the field's ``validation_alias``,
its option the field name in kebab case, its help the description. To add a setting, add a
field; the environment, ``--help`` and the command line follow.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, FilePath, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from service import data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True,
        validate_by_name=True,
        case_sensitive=True,
        env_ignore_empty=True,
    )

    redis_url: str | None = Field(
        None,
        validation_alias="REDIS_URL",
        description="Redis to read (redis://, rediss://, unix://, "
        "redis+sentinel://HOST[:PORT],.../SERVICE[/DB]); unset: the embedded redis-server",
    )
    stream: str = Field(
        "election:events",
        validation_alias="SEATCAST_STREAM",
        description="the event stream key",
    )
    rejected_stream: str | None = Field(
        None,
        validation_alias="SEATCAST_REJECTED_STREAM",
        description="where rejected events are copied (default: <stream>:rejected)",
    )
    election: FilePath = Field(
        default_factory=lambda: data.election_path("uk-2024"),
        validation_alias="SEATCAST_ELECTION",
        description="election definition file (default: the bundled UK 2024 definition)",
    )
    data_dir: Path = Field(
        Path(".seatcast"),
        validation_alias="SEATCAST_DATA_DIR",
        description="where the embedded Redis keeps its socket and append-only file",
    )
    host: str = Field("127.0.0.1", validation_alias="HOST", description="address to listen on")
    port: int = Field(
        8000, ge=0, le=65535, validation_alias="PORT", description="port to listen on"
    )
    history: int = Field(
        1000,
        validation_alias="SEATCAST_HISTORY",
        description="changes kept per channel for clients resuming with 'since'",
    )
    queue_bytes: int = Field(
        1 << 20,
        validation_alias="SEATCAST_QUEUE_BYTES",
        description="per-client outgoing queue bound in bytes (slow-client policy past it)",
    )
    max_frame_bytes: int = Field(
        64 * 1024,
        validation_alias="SEATCAST_MAX_FRAME_BYTES",
        description="largest client frame accepted; larger closes with 1009",
    )
    max_channels: int = Field(
        1000,
        validation_alias="SEATCAST_MAX_CHANNELS",
        description="channels one connection may subscribe to",
    )
    rate_limit: float = Field(
        20.0,
        validation_alias="SEATCAST_RATE_LIMIT",
        description="client messages per second per connection (burst twice that)",
    )
    ping_interval: float = Field(
        20.0,
        validation_alias="SEATCAST_PING_INTERVAL",
        description="seconds between server pings",
    )
    ping_timeout: float = Field(
        20.0,
        validation_alias="SEATCAST_PING_TIMEOUT",
        description="seconds to wait for a pong before closing",
    )
    compression: bool = Field(
        False,
        validation_alias="SEATCAST_COMPRESSION",
        description="enable permessage-deflate (costs ~300 KiB per connection)",
    )
    read_batch: int = Field(
        1000,
        validation_alias="SEATCAST_READ_BATCH",
        description="stream entries read per XREAD",
    )
    # The names that both logging and uvicorn know.
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info",
        validation_alias="SEATCAST_LOG_LEVEL",
        description="debug, info, warning or error",
    )
    token_secret: str | None = Field(
        None,
        repr=False,
        validation_alias="SEATCAST_TOKEN_SECRET",
        description="secret for HS256 subscriber tokens (better set in the environment)",
    )
    token_public_key: FilePath | None = Field(
        None,
        validation_alias="SEATCAST_TOKEN_PUBLIC_KEY",
        description="PEM public key file for RS256/ES256 subscriber tokens",
    )
    require_token: bool = Field(
        False,
        validation_alias="SEATCAST_REQUIRE_TOKEN",
        description="refuse clients (websocket 1008, HTTP 401) that bring no valid token",
    )
    allowed_origins: str = Field(
        "",
        validation_alias="SEATCAST_ALLOWED_ORIGINS",
        description="comma-separated browser origins allowed to open /ws (default: any)",
    )
    metrics_token: str | None = Field(
        None,
        repr=False,
        validation_alias="SEATCAST_METRICS_TOKEN",
        description="bearer token that /metrics requires (default: none)",
    )
    workers: int = Field(
        1,
        validation_alias="SEATCAST_WORKERS",
        description="independent service processes on one port (SO_REUSEPORT), each a core",
    )
    publish_max_bytes: int = Field(
        1 << 20,
        validation_alias="SEATCAST_PUBLISH_MAX_BYTES",
        description="largest request body POST /api/events reads (larger: 413)",
    )
    cache_control: str = Field(
        "public, max-age=1, stale-while-revalidate=5",
        validation_alias="SEATCAST_CACHE_CONTROL",
        description="Cache-Control of GET /api/... and /graphics/... answers",
    )
    webhooks: str | None = Field(
        None,
        validation_alias="SEATCAST_WEBHOOKS",
        description="URLs that receive each change's flat JSON: comma-separated, or @FILE",
    )
    webhook_interval: float = Field(
        1.0,
        validation_alias="SEATCAST_WEBHOOK_INTERVAL",
        description="least seconds between two requests to one webhook (changes coalesce)",
    )
    webhook_timeout: float = Field(
        5.0,
        validation_alias="SEATCAST_WEBHOOK_TIMEOUT",
        description="seconds a webhook request may take before it counts as failed",
    )
    sse_heartbeat: float = Field(
        15.0,
        gt=0,
        validation_alias="SEATCAST_SSE_HEARTBEAT",
        description="seconds between keep-alive comments on an idle /sse stream",
    )
    sse_retry: float = Field(
        3.0,
        gt=0,
        validation_alias="SEATCAST_SSE_RETRY",
        description="seconds an EventSource waits to reconnect (sent with jitter as retry:)",
    )
    sse_open_rate: float = Field(
        20.0,
        ge=0,
        validation_alias="SEATCAST_SSE_OPEN_RATE",
        description="/sse streams one client (credential, else address) may open a second; 0: any",
    )
    long_poll_timeout: float = Field(
        25.0,
        gt=0,
        validation_alias="SEATCAST_LONG_POLL_TIMEOUT",
        description="seconds a ?wait= request is held before 304",
    )
    long_poll_waiters: int = Field(
        1000,
        ge=0,
        validation_alias="SEATCAST_LONG_POLL_WAITERS",
        description="?wait= requests held at once (more: 503 with Retry-After)",
    )

    @property
    def rejected(self) -> str:
        return self.rejected_stream or f"{self.stream}:rejected"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """``Settings(...)`` holds what it is given and the defaults, nothing else: tests build
        settings so, and a variable left in someone's shell must not change them.
        ``load_settings`` is what reads the environment."""
        return (init_settings,)


def parser() -> argparse.ArgumentParser:
    """An option per setting, each keyed (``dest``) by its environment variable's name."""
    parse = argparse.ArgumentParser(
        prog="python -m service",
        description="seatcast: election results from a Redis stream, pushed over websockets.",
        epilog="Each option can also be set by the environment variable shown.",
    )
    for name, declared in Settings.model_fields.items():
        options: dict[str, Any] = {"dest": _env_name(declared), "default": None}
        if declared.annotation is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["metavar"] = name.upper()
        parse.add_argument(_option(name), help=_help(declared), **options)
    return parse


def load_settings(argv: Sequence[str] | None = None) -> Settings:
    """Settings from the environment, then ``argv`` (default: sys.argv) on top.

    Raises SystemExit(2) with a usage message naming each setting whose value is bad.
    """
    parse = parser()
    given = {env: value for env, value in vars(parse.parse_args(argv)).items() if value is not None}
    # Keyed by variable as ``given`` is. By-name construction makes the source also try each
    # field's own name (``port``) as a variable, keyed by that name: those are not ours.
    variables = {_env_name(declared) for declared in Settings.model_fields.values()}
    environment = {
        env: value for env, value in EnvSettingsSource(Settings)().items() if env in variables
    }
    try:
        return Settings(**{**environment, **given})
    except ValidationError as exc:
        parse.error("; ".join(_reason(error) for error in exc.errors()))


def _env_name(declared: FieldInfo) -> str:
    assert isinstance(declared.validation_alias, str), "each setting names its variable"
    return declared.validation_alias


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _help(declared: FieldInfo) -> str:
    """The description, the variable and the default (where no description says it)."""
    default = declared.get_default()
    if isinstance(default, bool):
        default = "on" if default else "off"
    if default is None or default == "" or declared.default_factory is not None:
        return f"{declared.description} [{_env_name(declared)}]"
    return f"{declared.description} [{_env_name(declared)}, default: {default}]"


def _reason(error: ErrorDetails) -> str:
    """``PORT / --port: bad value 'abc': input should be a valid integer...``"""
    key = str(error["loc"][0]) if error["loc"] else ""
    for name, declared in Settings.model_fields.items():
        if key in (name, declared.validation_alias):
            key = f"{_env_name(declared)} / {_option(name)}"
    message = str(error["msg"])
    return f"{key}: bad value {error['input']!r}: {message[:1].lower()}{message[1:]}"
