"""One pass over a folder of PA files: read, check, order, write to the stream, quarantine.

Each file becomes at most one stream entry, written by a Lua script together with a record
of it in the hash ``<stream>:pa:written`` (file name and SHA-256 -> entry id): a second run, a
second adapter on the same drop, or a file sent again under the same name adds nothing.
A file that cannot be used goes, with a ``.reason`` beside it, to the quarantine folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from clients.pa.files import (
    PaFile,
    PaFileError,
    PaRecount,
    PaResult,
    PaRush,
    PaSeat,
    PaStateOfParties,
    parse_pa,
)
from clients.pa.mapping import Mapper
from service.core.decoding import validate_event
from service.core.events import InvalidEvent

log = logging.getLogger("seatcast-pa")

# Check, add and record in one step, so that two adapters never write one file twice.
WRITE_ONCE = """
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return false end
local id = redis.call('XADD', KEYS[1], '*', 'event', ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], id)
return id
"""

# Within a seat: a recount, then the rush, then results by revision.
_RANK = {PaRecount: 0, PaRush: 1, PaResult: 2}


def written_key(stream: str) -> str:
    return f"{stream}:pa:written"


@dataclass
class Counts:
    files_read: int = 0
    events_written: int = 0
    quarantined: int = 0
    skipped: int = 0
    """Already written (by this run, an earlier one or another adapter), or superseded."""

    def summary(self) -> str:
        return (
            f"{self.files_read} files read, {self.events_written} events written, "
            f"{self.quarantined} quarantined, {self.skipped} skipped as already written"
        )


@dataclass(frozen=True, slots=True)
class _Stat:
    size: int
    mtime_ns: int


@dataclass
class _File:
    path: Path
    stat: _Stat
    content: bytes
    digest: str
    parsed: PaFile | None = None
    seat: str | None = None
    event: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.path.name}:{self.digest}"


def _stat(path: Path) -> _Stat | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return _Stat(st.st_size, st.st_mtime_ns)


def _read(path: Path) -> tuple[_Stat, bytes] | None:
    """The file's content if it stood still while read (same size and mtime around it)."""
    before = _stat(path)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return None
    after = _stat(path)
    if before is None or before != after or len(content) != before.size:
        return None
    return before, content


class Ingest:
    """Passes over one folder, writing to one stream; keeps what it has handled in memory."""

    def __init__(
        self,
        client: aioredis.Redis,
        stream: str,
        mapper: Mapper,
        folder: Path,
        quarantine: Path,
        progress: Callable[[int, int], None] = lambda done, total: None,
    ) -> None:
        self.client = client
        self.stream = stream
        self.mapper = mapper
        self.folder = folder
        self.quarantine_folder = quarantine
        self.progress = progress
        self.counts = Counts()
        self._handled: dict[str, _Stat] = {}
        self._resulted: set[str] = set()
        self._others_logged: set[str] = set()
        self._write_once = client.register_script(WRITE_ONCE)
        self._done = self._total = 0

    def pending(self) -> list[Path]:
        """PA files in the folder not yet handled as they now stand (dotfiles are partial)."""
        found: list[tuple[int, str, Path]] = []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or not name.lower().endswith(".xml"):
                    continue
                try:
                    if not entry.is_file():
                        continue
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                if self._handled.get(name) != _Stat(st.st_size, st.st_mtime_ns):
                    found.append((st.st_mtime_ns, name, Path(entry.path)))
        found.sort()
        return [path for _, _, path in found]

    async def run_pass(self) -> int:
        """Handle every pending file; returns how many changed while read (left for later)."""
        paths = self.pending()
        if not paths:
            return 0
        deferred = 0
        files: list[_File] = []
        for path in paths:
            read = _read(path)
            if read is None:
                deferred += path.exists()
                continue
            stat, content = read
            files.append(_File(path, stat, content, hashlib.sha256(content).hexdigest()))
        if not files:
            return deferred
        self.counts.files_read += len(files)
        self._done, self._total = 0, len(files)
        known = await self.client.hmget(written_key(self.stream), [f.key for f in files])
        fresh = []
        for file, entry_id in zip(files, known, strict=True):
            if entry_id is None:
                fresh.append(file)
            else:
                self._skip(file)
        for file in self._ordered(self._parse(fresh)):
            deferred += await self._write(file)
        return deferred

    def _tick(self) -> None:
        self._done += 1
        self.progress(self._done, self._total)

    def _parse(self, files: list[_File]) -> list[_File]:
        parsed: list[_File] = []
        for file in files:
            try:
                file.parsed = parse_pa(file.content)
            except PaFileError as exc:
                self._quarantine(file, str(exc))
                continue
            for seat in _seats(file.parsed):
                self.mapper.learn(seat)
            parsed.append(file)
        for file in parsed:  # after learning every number the pass's files give
            if file.parsed is not None and not isinstance(file.parsed, PaStateOfParties):
                try:
                    file.seat = self.mapper.seat(file.parsed.seat)
                except PaFileError:
                    file.seat = None  # quarantined with the reason when its turn comes
        return parsed

    def _ordered(self, files: list[_File]) -> list[_File]:
        """Night order (mtime, name); within a seat, recount < rush < results by revision.

        State-of-parties files go last, by the number of results they include, so that the
        results they count are on the stream before them.
        """
        seats: dict[str, list[int]] = {}
        for index, file in enumerate(files):
            if file.seat is not None:
                seats.setdefault(file.seat, []).append(index)
        ordered = list(files)
        for indexes in seats.values():
            in_seat = sorted((files[i] for i in indexes), key=_seat_order)
            for index, file in zip(indexes, in_seat, strict=True):
                ordered[index] = file
        tallies = [f for f in ordered if isinstance(f.parsed, PaStateOfParties)]
        tallies.sort(key=lambda f: (_results(f), f.path.name))
        return [f for f in ordered if not isinstance(f.parsed, PaStateOfParties)] + tallies

    async def _write(self, file: _File) -> int:
        assert file.parsed is not None
        try:
            mapped = self.mapper.to_event(file.parsed)
            # The stream reader's own checks: what it would reject is quarantined here instead.
            validate_event(mapped.event, self.mapper.election, file.path.name)
        except (PaFileError, InvalidEvent) as exc:
            self._quarantine(file, str(exc))
            return 0
        seat = mapped.event.get("constituency")
        if not isinstance(file.parsed, PaResult) and seat in self._resulted:
            log.info("skipped %s: %s already has a result", file.path.name, seat)
            self._skip(file)
            return 0
        for abbreviation in sorted(mapped.others - self._others_logged):
            self._others_logged.add(abbreviation)
            log.warning(
                "party %r is not in %s: counted as %s",
                abbreviation,
                self.mapper.election.id,
                self.mapper.election.other_party,
            )
        # The file must not have changed since it was read: else it waits for the next pass.
        again = _read(file.path)
        if again is None or again[0] != file.stat or again[1] != file.content:
            self._tick()
            return int(file.path.exists())
        entry_id = await self._write_once(
            keys=[self.stream, written_key(self.stream)],
            args=[orjson.dumps(mapped.event), file.key],
        )
        if entry_id is None:
            self._skip(file)
            return 0
        self.counts.events_written += 1
        self._handled[file.path.name] = file.stat
        self._tick()
        if isinstance(seat, str) and isinstance(file.parsed, PaResult):
            self._resulted.add(seat)
        return 0

    def _skip(self, file: _File) -> None:
        self.counts.skipped += 1
        self._handled[file.path.name] = file.stat
        self._tick()

    def _quarantine(self, file: _File, reason: str) -> None:
        self.quarantine_folder.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_folder / file.path.name
        reason_file = target.with_name(target.name + ".reason")
        reason_file.write_text(reason + "\n", encoding="utf-8")
        try:
            os.replace(file.path, target)
        except FileNotFoundError:
            pass
        except OSError:  # another file system: copy what was read, then remove
            target.write_bytes(file.content)
            file.path.unlink(missing_ok=True)
        self.counts.quarantined += 1
        self._tick()
        log.warning("quarantined %s: %s", file.path.name, reason)


def _seats(parsed: PaFile) -> tuple[PaSeat, ...]:
    return parsed.seats if isinstance(parsed, PaStateOfParties) else (parsed.seat,)


def _seat_order(file: _File) -> tuple[int, int, str]:
    parsed = file.parsed
    revision = parsed.revision if isinstance(parsed, PaResult) else 0
    return _RANK.get(type(parsed), 3), revision, file.path.name


def _results(file: _File) -> int:
    return file.parsed.results if isinstance(file.parsed, PaStateOfParties) else 0
