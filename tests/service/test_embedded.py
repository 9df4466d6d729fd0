"""The embedded redis-server: real processes, real sockets, no mocks."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from service.embedded import EmbeddedRedis, EmbeddedRedisError
from tests.conftest import TIMEOUT

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir (not yet created) whose socket path fits the ~107-byte unix limit."""
    candidate = tmp_path / "rd"
    if len(os.fsencode(str(candidate / "redis.sock"))) <= 100:
        yield candidate
        return
    short = Path(tempfile.mkdtemp(prefix="sc-emb-", dir="/tmp"))
    try:
        yield short / "rd"
    finally:
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def make() -> Iterator[Callable[..., EmbeddedRedis]]:
    """Build EmbeddedRedis objects that are all stopped at teardown, attached ones first."""
    made: list[EmbeddedRedis] = []

    def factory(directory: Path, **kwargs: float) -> EmbeddedRedis:
        instance = EmbeddedRedis(directory, **kwargs)
        made.append(instance)
        return instance

    yield factory
    for instance in sorted(made, key=lambda e: e.owned):
        instance.stop()


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def server_pid(url: str) -> int:
    with client(url) as c:
        return int(c.info("server")["process_id"])


def alive(pid: int) -> bool:
    """Whether pid is a running process (a zombie awaiting its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def lock_is_free(directory: Path) -> bool:
    fd = os.open(directory / "redis.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_starts_on_a_unix_socket_and_answers_ping(
    data_dir: Path, make: Callable[..., EmbeddedRedis], caplog: pytest.LogCaptureFixture
) -> None:
    embedded = make(data_dir)
    assert not embedded.owned
    with caplog.at_level(logging.INFO, logger="seatcast.embedded"):
        url = embedded.start()
    sock = data_dir / "redis.sock"
    assert url == embedded.url == f"unix://{sock}"
    assert embedded.owned
    assert sock.is_socket()
    assert sock.stat().st_mode & 0o777 == 0o700
    with redis.Redis.from_url(url, decode_responses=True) as c:
        assert c.ping()
        assert c.config_get("appendonly") == {"appendonly": "yes"}
        assert c.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert c.config_get("port") == {"port": "0"}
        assert c.config_get("dir") == {"dir": str(data_dir)}
    assert "started" in caplog.text and str(sock) in caplog.text


def test_start_and_stop_are_idempotent(data_dir: Path, make: Callable[..., EmbeddedRedis]) -> None:
    embedded = make(data_dir)
    url = embedded.start()
    pid = server_pid(url)
    assert embedded.start() == url
    assert server_pid(url) == pid  # no second server
    embedded.stop()
    embedded.stop()
    assert not embedded.owned


def test_data_persists_across_stop_and_start(
    data_dir: Path, make: Callable[..., EmbeddedRedis]
) -> None:
    with make(data_dir) as first:
        with client(first.url) as c:
            c.set("seatcast:test", "kept")
            c.xadd("election:events", {"event": "{}"})
    assert (data_dir / "appendonly.aof").stat().st_size > 0
    with make(data_dir) as second:
        assert second.owned
        with client(second.url) as c:
            assert c.get("seatcast:test") == b"kept"
            assert c.xlen("election:events") == 1


def test_stop_ends_the_child_removes_the_socket_and_frees_the_lock(
    data_dir: Path, make: Callable[..., EmbeddedRedis]
) -> None:
    embedded = make(data_dir)
    pid = server_pid(embedded.start())
    assert alive(pid)
    assert not lock_is_free(data_dir)
    embedded.stop()
    assert not alive(pid)
    assert not (data_dir / "redis.sock").exists()
    assert not (data_dir / "redis.pid").exists()
    assert lock_is_free(data_dir)


def test_second_instance_on_the_same_dir_attaches(
    data_dir: Path, make: Callable[..., EmbeddedRedis], caplog: pytest.LogCaptureFixture
) -> None:
    owner = make(data_dir)
    url = owner.start()
    pid = server_pid(url)

    other = make(data_dir)
    with caplog.at_level(logging.INFO, logger="seatcast.embedded"):
        assert other.start() == url
    assert not other.owned
    assert "attached" in caplog.text
    assert server_pid(url) == pid

    other.stop()  # detaches only
    assert alive(pid)
    with client(url) as c:
        assert c.ping()

    owner.stop()
    assert not alive(pid)
    assert not (data_dir / "redis.sock").exists()


def test_a_stale_socket_and_pidfile_do_not_prevent_start(
    data_dir: Path, make: Callable[..., EmbeddedRedis]
) -> None:
    data_dir.mkdir(parents=True)
    # What a server killed with SIGKILL leaves: a socket file nobody listens on, a pidfile.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(data_dir / "redis.sock"))
    stale.close()
    assert (data_dir / "redis.sock").is_socket()
    (data_dir / "redis.pid").write_text("999999\n")

    embedded = make(data_dir, startup_timeout=TIMEOUT)
    url = embedded.start()
    assert embedded.owned
    with client(url) as c:
        assert c.ping()
    assert (data_dir / "redis.pid").read_text().strip() == str(server_pid(url))


def test_a_second_process_attaches_instead_of_starting_a_server(
    data_dir: Path, make: Callable[..., EmbeddedRedis]
) -> None:
    owner = make(data_dir)
    url = owner.start()
    pid = server_pid(url)
    code = f"""
        import json, sys
        from pathlib import Path
        import redis
        from service.embedded import EmbeddedRedis

        embedded = EmbeddedRedis(Path({str(data_dir)!r}), startup_timeout={TIMEOUT})
        url = embedded.start()
        with redis.Redis.from_url(url) as c:
            c.set("seatcast:from-child", "yes")
            pid = int(c.info("server")["process_id"])
        json.dump({{"owned": embedded.owned, "url": url, "pid": pid}}, sys.stdout)
        embedded.stop()
    """
    done = subprocess.run(
        python(code), env=child_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == {"owned": False, "url": url, "pid": pid}
    assert alive(pid)  # the attached process's stop() left the server running
    with client(url) as c:
        assert c.get("seatcast:from-child") == b"yes"


def test_locked_dir_without_a_server_fails_clearly(
    data_dir: Path, make: Callable[..., EmbeddedRedis]
) -> None:
    data_dir.mkdir(parents=True)
    fd = os.open(data_dir / "redis.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another "owner" whose server never answers
        embedded = make(data_dir, startup_timeout=0.5)
        with pytest.raises(EmbeddedRedisError, match="locked by another process"):
            embedded.start()  # once its startup_timeout has passed, not hanging on
        assert not embedded.owned
    finally:
        os.close(fd)


def test_a_server_that_cannot_start_reports_its_log(
    data_dir: Path, make: Callable[..., EmbeddedRedis]
) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "appendonly.aof").mkdir()  # redis-server cannot open its AOF
    embedded = make(data_dir, startup_timeout=TIMEOUT)
    with pytest.raises(EmbeddedRedisError, match=r"(?s)exited.*redis\.log.*append"):
        embedded.start()
    assert not embedded.owned
    assert lock_is_free(data_dir)

    (data_dir / "appendonly.aof").rmdir()
    assert embedded.start() == embedded.url  # and it recovers once the cause is gone
    assert embedded.owned


def test_an_overlong_socket_path_is_refused(make: Callable[..., EmbeddedRedis]) -> None:
    embedded = make(Path("/tmp") / ("x" * 120))
    with pytest.raises(EmbeddedRedisError, match="107-byte"):
        embedded.start()
    assert not Path("/tmp", "x" * 120).exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_server_does_not_outlive_a_parent_killed_hard(
    data_dir: Path, make: Callable[..., EmbeddedRedis]
) -> None:
    code = f"""
        import sys, time
        from pathlib import Path
        import redis
        from service.embedded import EmbeddedRedis

        embedded = EmbeddedRedis(Path({str(data_dir)!r}), startup_timeout={TIMEOUT})
        url = embedded.start()
        with redis.Redis.from_url(url) as c:
            c.set("seatcast:before-crash", "kept")
            print(c.info("server")["process_id"], flush=True)
        time.sleep(60)
    """
    with subprocess.Popen(
        python(code), env=child_env(), stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        try:
            pid = int(line)
        finally:
            parent.send_signal(signal.SIGKILL)
            parent.wait(timeout=TIMEOUT)
    assert wait_until(lambda: not alive(pid)), "redis-server outlived its killed parent"
    assert wait_until(lambda: lock_is_free(data_dir))

    # SIGTERM is a clean shutdown for redis-server: the AOF was flushed, the socket removed.
    embedded = make(data_dir)
    embedded.start()
    assert embedded.owned
    with client(embedded.url) as c:
        assert c.get("seatcast:before-crash") == b"kept"
