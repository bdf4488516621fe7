"""The `[console]` section of the store config: who may use the reviewer console, and how.

```toml
[console]
enabled = true                  # serve /console/ (default true)
session_seconds = 28800         # a login lasts this long (default 8 h)
session_secret = "..."          # signs session cookies; default: random per start
secure_cookies = false          # mark cookies Secure (set true behind HTTPS)
trusted_header = ""             # e.g. "X-Forwarded-User": a fronting proxy names the person
trusted_proxies = []            # client addresses the trusted header is accepted from

[[console.users]]
name = "alice"
role = "reviewer"               # viewer | reviewer | admin
password_hash = "$argon2id$..."  # `enforce-sdk console hash-password`
```

People are not services: bearer tokens (`[[tokens]]`) are for producers and
SDK hosts; console users log in with a password (argon2id hash in the config)
or are named by a trusted header a fronting proxy sets (off by default).
"""

from __future__ import annotations

import enum
import ipaddress
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...model.problems import ProblemCollector, show

_USER_NAME_RE = re.compile(r"[A-Za-z0-9_.\-@]{1,64}")  # also a label source name
_HEADER_RE = re.compile(r"[A-Za-z0-9\-]{1,64}")


class ConsoleRole(enum.IntEnum):
    """What a person may do in the console, ordered: an admin may do what a reviewer may."""

    VIEWER = 1  # read: lookup, queue, appeals, history
    REVIEWER = 2  # and act on held labels and appeals
    ADMIN = 3  # and mass actions

    @property
    def wire(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    name: str
    role: ConsoleRole
    password_hash: str | None = field(default=None, repr=False)  # None: trusted header only


@dataclass(frozen=True, slots=True)
class ConsoleSection:
    enabled: bool = True
    session_seconds: float = 8 * 3600.0
    # Random per start when not configured: made once when the config is loaded (before a
    # master forks its workers, so every worker signs alike); a restart logs everyone out.
    session_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False,
                                  compare=False)
    secure_cookies: bool = False
    trusted_header: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    users: tuple[ConsoleUser, ...] = ()

    def user(self, name: str) -> ConsoleUser | None:
        return next((u for u in self.users if u.name == name), None)


_KEYS = {"enabled", "session_seconds", "session_secret", "secure_cookies", "trusted_header",
         "trusted_proxies", "users"}


def parse_console(v: ProblemCollector, t: Mapping[str, Any]) -> ConsoleSection:
    """The `[console]` table, every problem added to `v` under `console.<key>`."""
    v.no_extra(t, _KEYS, "console.")
    d = ConsoleSection()
    enabled = t.get("enabled", True)
    if not isinstance(enabled, bool):
        v.add("console.enabled", f"must be true or false, got {show(enabled)}")
        enabled = True
    secure = t.get("secure_cookies", False)
    if not isinstance(secure, bool):
        v.add("console.secure_cookies", f"must be true or false, got {show(secure)}")
        secure = False
    seconds = t.get("session_seconds", d.session_seconds)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not (
            60 <= seconds <= 30 * 86400):
        v.add("console.session_seconds", f"must be seconds in 60..2592000, got {show(seconds)}")
        seconds = d.session_seconds
    secret = d.session_secret
    raw_secret = t.get("session_secret")
    if raw_secret is not None:
        if not isinstance(raw_secret, str) or len(raw_secret) < 32:
            v.add("console.session_secret", "must be a string of at least 32 characters "
                  "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
        else:
            secret = raw_secret.encode("utf-8")
    header = t.get("trusted_header")
    if header is not None and (not isinstance(header, str) or not _HEADER_RE.fullmatch(header)):
        v.add("console.trusted_header", f"must be an HTTP header name, got {show(header)}")
        header = None
    proxies = _proxies(v, t.get("trusted_proxies", []))
    if header and not proxies:
        v.add("console.trusted_proxies", "trusted_header needs the addresses of the proxies "
              "that set it (anyone else could send the header and be anyone)")
    users = _users(v, t.get("users", []), header_only_ok=bool(header))
    return ConsoleSection(enabled=enabled, session_seconds=float(seconds), session_secret=secret,
                          secure_cookies=secure, trusted_header=header.lower() if header else None,
                          trusted_proxies=proxies, users=users)


def _proxies(v: ProblemCollector, raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list):
        v.add("console.trusted_proxies", f"must be a list of IP addresses, got {show(raw)}")
        return ()
    out: list[str] = []
    for i, item in enumerate(raw):
        try:
            out.append(str(ipaddress.ip_address(item if isinstance(item, str) else "")))
        except ValueError:
            v.add(f"console.trusted_proxies[{i}]", f"must be an IP address, got {show(item)}")
    return tuple(out)


def _users(v: ProblemCollector, raw: object, *, header_only_ok: bool) -> tuple[ConsoleUser, ...]:
    if not isinstance(raw, list):
        v.add("console.users", f"must be an array of tables ([[console.users]]), got {show(raw)}")
        return ()
    roles = ", ".join(r.wire for r in ConsoleRole)
    out: list[ConsoleUser] = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        p = f"console.users[{i}]."
        if not isinstance(item, Mapping):
            v.add(f"console.users[{i}]", f"must be a table, got {show(item)}")
            continue
        v.no_extra(item, {"name", "role", "password_hash"}, p)
        name, role_raw, digest = item.get("name"), item.get("role"), item.get("password_hash")
        ok = True
        if not isinstance(name, str) or not _USER_NAME_RE.fullmatch(name):
            v.add(p + "name", f"must match [A-Za-z0-9_.-@]{{1,64}}, got {show(name)}")
            ok = False
        elif name in names:
            v.add(p + "name", f"duplicate console user {name!r}")
            ok = False
        if not isinstance(role_raw, str) or role_raw.strip().upper() not in ConsoleRole.__members__:
            v.add(p + "role", f"must be one of {roles}, got {show(role_raw)}")
            ok = False
        if digest is None and not header_only_ok:
            v.add(p + "password_hash", "is required (make one with `enforce-sdk console "
                  "hash-password`), unless console.trusted_header names people")
            ok = False
        elif digest is not None and (not isinstance(digest, str)
                                     or not digest.startswith("$argon2")):
            v.add(p + "password_hash", "must be an argon2 hash ($argon2id$...) from "
                  "`enforce-sdk console hash-password`; plain passwords are not accepted")
            ok = False
        if ok:
            assert isinstance(name, str) and isinstance(role_raw, str)
            names.add(name)
            out.append(ConsoleUser(name, ConsoleRole[role_raw.strip().upper()],
                                   digest if isinstance(digest, str) else None))
    return tuple(out)
