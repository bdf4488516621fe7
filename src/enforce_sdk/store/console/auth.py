"""Who is using the console: password login, signed session cookies, CSRF tokens, roles.

A session is a cookie the store signs (HMAC-SHA256 with `console.session_secret`):
`<base64 json {"u": name, "n": nonce, "x": expiry}>.<signature>`. Nothing is kept
server-side, so every worker of a master accepts every session; the person's role
is read from the config on each request (a user removed from the config is out
at the next restart). The CSRF token of a form is an HMAC of the session's
nonce: a page from another site cannot know it, and the cookie is SameSite=Strict
and HttpOnly besides. Before login, a short-lived pre-session cookie carries
the nonce the login form's token is made from.

Passwords are verified with argon2-cffi (argon2id hashes made by
`enforce-sdk console hash-password`). A trusted header (`console.trusted_header`,
accepted only from `console.trusted_proxies`) names the person instead, for a
store behind a single-sign-on proxy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .settings import ConsoleRole, ConsoleSection, ConsoleUser

SESSION_COOKIE = "enforce_console"
PRE_SESSION_COOKIE = "enforce_console_login"
COOKIE_PATH = "/console"
_PRE_SESSION_SECONDS = 3600
_hasher = PasswordHasher()
# Verified against when the user name is unknown, so both answers take the time of one hash.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """An argon2id hash of `password` for `[[console.users]] password_hash`."""
    return _hasher.hash(password)


@dataclass(frozen=True, slots=True)
class Person:
    """A signed-in console user: who acts (the audit actor) and the session's CSRF nonce."""

    name: str
    role: ConsoleRole
    nonce: str
    via_header: bool = False

    @property
    def actor(self) -> str:
        """The audit actor of this person's writes."""
        return f"console:{self.name}"

    def may(self, role: ConsoleRole) -> bool:
        return self.role >= role


class ConsoleAuth:
    """Login, sessions and CSRF for one console config."""

    def __init__(self, settings: ConsoleSection, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._clock = clock  # epoch seconds: session and pre-session expiry
        self._secret = hashlib.sha256(b"enforce-console\x00" + settings.session_secret).digest()

    # -- passwords ---------------------------------------------------------------------

    def check_password(self, name: str, password: str) -> ConsoleUser | None:
        """The user if `password` is theirs; None otherwise (unknown user or wrong password)."""
        user = self.settings.user(name)
        digest = user.password_hash if user is not None else None
        try:
            _hasher.verify(digest or _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return user if digest is not None else None

    # -- signing -----------------------------------------------------------------------

    def _sign(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(
            hmac.new(self._secret, payload, hashlib.sha256).digest()).decode().rstrip("=")

    def csrf_token(self, nonce: str) -> str:
        return self._sign(b"csrf\x00" + nonce.encode())

    def csrf_ok(self, nonce: str, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.csrf_token(nonce), token)

    def _seal(self, data: dict[str, object]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()
        return f"{body}.{self._sign(body.encode())}"

    def _open(self, value: str | None) -> dict[str, object] | None:
        if not value or value.count(".") != 1:
            return None
        body, signature = value.split(".")
        if not hmac.compare_digest(self._sign(body.encode()), signature):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body.encode()))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(data, dict):
            return None
        expiry = data.get("x")
        if not isinstance(expiry, int | float) or expiry < self._clock():
            return None
        return data

    # -- sessions ----------------------------------------------------------------------

    def new_session(self, user: ConsoleUser) -> str:
        """The session cookie value for a fresh login (a new nonce: a new CSRF token)."""
        return self._seal({"u": user.name, "n": secrets.token_urlsafe(16),
                           "x": int(self._clock() + self.settings.session_seconds)})

    def new_pre_session(self) -> tuple[str, str]:
        """(cookie value, nonce) of the login form's pre-session."""
        nonce = secrets.token_urlsafe(16)
        return self._seal({"n": nonce, "x": int(self._clock() + _PRE_SESSION_SECONDS)}), nonce

    def pre_session_nonce(self, value: str | None) -> str | None:
        data = self._open(value)
        if data is None or "u" in data:  # a session cookie is not a login form's
            return None
        nonce = data.get("n")
        return nonce if isinstance(nonce, str) else None

    def person(self, session: str | None, headers: dict[str, str],
               client_host: str | None) -> Person | None:
        """The person a request comes from: the trusted header (from a trusted proxy), or
        the session cookie; None if neither names a configured user."""
        header = self.settings.trusted_header
        if header and client_host in self.settings.trusted_proxies:
            named = headers.get(header)
            if named:
                user = self.settings.user(named.strip())
                if user is None:
                    return None
                return Person(user.name, user.role, "hdr:" + user.name, via_header=True)
        data = self._open(session)
        if data is None:
            return None
        name, nonce = data.get("u"), data.get("n")
        if not isinstance(name, str) or not isinstance(nonce, str):
            return None
        user = self.settings.user(name)
        if user is None or user.password_hash is None:
            return None
        return Person(user.name, user.role, nonce)
