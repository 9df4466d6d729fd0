"""Who may connect and what they may see: subscriber tokens, origins, the metrics token.

Tokens are JWTs verified with PyJWT (HS256 with a shared secret, or RS256/ES256 with a
public key). Claims: ``exp`` (required), ``channels`` (patterns a subscriber may hold:
``"national"``, ``"region:*"``, ``"*"``; absent means every channel) and ``embargo``
(true: may see embargoed data, such as an exit poll before its publication time) and
``publish`` (true: may add events with ``POST /api/events``). A token is never logged; its
``sub`` may be.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jwt

ALGORITHMS_FOR_KEYS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


class AccessDenied(Exception):
    """A credential that is missing, invalid or expired; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What one client may see."""

    channels: tuple[str, ...] | None = None
    """Patterns of channels allowed; None: every channel."""
    sees_embargoed: bool = False
    """May see embargoed data before its time."""
    subject: str | None = None
    expires: float | None = None
    publish: bool = False
    """May add events to the stream (``POST /api/events``)."""

    def allows(self, channel: str) -> bool:
        if self.channels is None:
            return True
        for pattern in self.channels:
            if pattern == "*" or pattern == channel:
                return True
            if pattern.endswith(":*") and channel.startswith(pattern[:-1]):
                return True
        return False


PUBLIC = Grant()
"""An anonymous client where tokens are optional: every channel, nothing embargoed."""


class Access:
    """The service's access policy, from its settings."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: Path | None = None,
        required: bool = False,
        allowed_origins: tuple[str, ...] = (),
        metrics_token: str | None = None,
    ) -> None:
        if required and secret is None and public_key is None:
            raise ValueError("tokens are required but no token secret or public key is set")
        self.required = required
        self.allowed_origins = allowed_origins
        self.metrics_token = metrics_token
        self._key: str | None = secret
        self._algorithms = ["HS256", "HS384", "HS512"]
        if public_key is not None:
            self._key = public_key.read_text()
            self._algorithms = ALGORITHMS_FOR_KEYS

    @property
    def verifies_tokens(self) -> bool:
        """A token secret or public key is set: tokens can be checked at all."""
        return self._key is not None

    def origin_allowed(self, origin: str | None) -> bool:
        """Browsers send Origin; other clients need not. An allowlist binds browsers only."""
        return not self.allowed_origins or origin is None or origin in self.allowed_origins

    def grant(self, token: str | None) -> Grant:
        """The grant a token gives; raises AccessDenied with a reason fit for the client."""
        if not token:
            if self.required:
                raise AccessDenied("a token is required")
            return PUBLIC
        if self._key is None:
            raise AccessDenied("this service does not accept tokens")
        try:
            claims = jwt.decode(
                token, self._key, algorithms=self._algorithms, options={"require": ["exp"]}
            )
        except jwt.ExpiredSignatureError:
            raise AccessDenied("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise AccessDenied(f"the token is not valid ({type(exc).__name__})") from None
        channels = claims.get("channels")
        if channels is not None and (
            not isinstance(channels, list) or not all(isinstance(c, str) for c in channels)
        ):
            raise AccessDenied("the token's 'channels' claim must be a list of channel patterns")
        subject = claims.get("sub")
        return Grant(
            channels=None if channels is None else tuple(channels),
            sees_embargoed=claims.get("embargo") is True,
            subject=subject if isinstance(subject, str) else None,
            expires=float(claims["exp"]),
            publish=claims.get("publish") is True,
        )

    def metrics_allowed(self, headers: Mapping[str, str]) -> bool:
        if self.metrics_token is None:
            return True
        offered = bearer(headers.get("authorization"))
        return offered is not None and hmac.compare_digest(offered, self.metrics_token)


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
