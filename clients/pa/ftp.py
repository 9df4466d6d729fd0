"""Mirroring PA's FTP drop into a local folder, so that a folder pass can read it.

Each poll lists the remote folder and downloads the files that are new, or whose size or
modification time changed, under a dot-name, renaming each into place only once it is whole and
the remote file still stands as listed. What was fetched is remembered, so a file that was
quarantined (and so left the local folder) is not fetched again.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import aioftp

log = logging.getLogger("seatcast-pa")


class FtpUrlError(ValueError):
    """An ``--ftp`` URL that cannot be used."""


@dataclass(frozen=True, slots=True)
class FtpDrop:
    host: str
    port: int
    user: str
    password: str
    path: str

    @classmethod
    def from_url(cls, url: str) -> FtpDrop:
        parts = urlsplit(url)
        if parts.scheme != "ftp" or not parts.hostname:
            raise FtpUrlError(f"{url!r}: expected ftp://[user[:password]@]host[:port]/folder")
        try:
            port = parts.port or 21
        except ValueError as exc:
            raise FtpUrlError(f"{url!r}: {exc}") from None
        return cls(
            host=parts.hostname,
            port=port,
            user=unquote(parts.username) if parts.username else "anonymous",
            password=unquote(parts.password) if parts.password else "anon@",
            path=unquote(parts.path) or "/",
        )

    def __str__(self) -> str:
        return f"ftp://{self.user}@{self.host}:{self.port}{self.path}"


class FtpMirror:
    def __init__(self, drop: FtpDrop, folder: Path, timeout: float = 30.0) -> None:
        self.drop = drop
        self.folder = folder
        self.timeout = timeout
        self._fetched: dict[str, tuple[str, str]] = {}

    async def poll(self) -> int:
        """Fetch what is new on the drop; returns how many files were fetched."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fetched = 0
        async with aioftp.Client.context(
            self.drop.host,
            self.drop.port,
            self.drop.user,
            self.drop.password,
            socket_timeout=self.timeout,
            connection_timeout=self.timeout,
        ) as client:
            listing = await client.list(self.drop.path)
            for remote, info in sorted(listing, key=lambda item: str(item[0])):
                name = remote.name
                if info.get("type") != "file" or name.startswith("."):
                    continue
                stamp = (str(info.get("size", "")), str(info.get("modify", "")))
                if self._fetched.get(name) == stamp:
                    continue
                if await self._fetch(client, remote, stamp):
                    self._fetched[name] = stamp
                    fetched += 1
        return fetched

    async def _fetch(
        self, client: aioftp.Client, remote: PurePosixPath, stamp: tuple[str, str]
    ) -> bool:
        partial = self.folder / f".{remote.name}.part"
        size = 0
        with partial.open("wb") as out:
            async with client.download_stream(remote) as stream:
                async for block in stream.iter_by_block():
                    out.write(block)
                    size += len(block)
        info = await client.stat(remote)
        now = (str(info.get("size", "")), str(info.get("modify", "")))
        if now != stamp or (stamp[0] and str(size) != stamp[0]):
            # Still being uploaded: the next poll takes it whole.
            partial.unlink(missing_ok=True)
            log.info("%s changed while being fetched; next poll", remote.name)
            return False
        os.replace(partial, self.folder / remote.name)
        return True
