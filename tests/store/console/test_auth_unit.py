"""ConsoleAuth without a server: session expiry and signatures, CSRF tokens, pre-sessions."""

from __future__ import annotations

from enforce_sdk.store.config import StoreConfig
from enforce_sdk.store.console.auth import ConsoleAuth, hash_password

HASH = hash_password("reviewer-pass")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _auth(clock: Clock, secret: str = "s" * 40) -> ConsoleAuth:
    config = StoreConfig.from_dict({"console": {"session_seconds": 600, "session_secret": secret,
                                                "users": [{"name": "rita", "role": "reviewer",
                                                           "password_hash": HASH}]}})
    return ConsoleAuth(config.console, clock=clock)


def test_a_session_lasts_session_seconds() -> None:
    clock = Clock()
    auth = _auth(clock)
    user = auth.check_password("rita", "reviewer-pass")
    assert user is not None
    cookie = auth.new_session(user)
    person = auth.person(cookie, {}, "127.0.0.1")
    assert person is not None and (person.name, person.actor) == ("rita", "console:rita")
    clock.now += 599
    assert auth.person(cookie, {}, "127.0.0.1") is not None
    clock.now += 2
    assert auth.person(cookie, {}, "127.0.0.1") is None


def test_another_secret_or_a_pre_session_is_no_session() -> None:
    clock = Clock()
    auth, other = _auth(clock), _auth(clock, "t" * 40)
    user = auth.check_password("rita", "reviewer-pass")
    assert user is not None
    cookie = auth.new_session(user)
    assert other.person(cookie, {}, "127.0.0.1") is None
    pre, nonce = auth.new_pre_session()
    assert auth.person(pre, {}, "127.0.0.1") is None  # a login form's cookie signs no one in
    assert auth.pre_session_nonce(pre) == nonce
    assert auth.pre_session_nonce(cookie) is None  # and a session is not a login form's


def test_csrf_tokens_are_per_session() -> None:
    clock = Clock()
    auth = _auth(clock)
    user = auth.check_password("rita", "reviewer-pass")
    assert user is not None
    a = auth.person(auth.new_session(user), {}, None)
    b = auth.person(auth.new_session(user), {}, None)
    assert a is not None and b is not None and a.nonce != b.nonce
    assert auth.csrf_ok(a.nonce, auth.csrf_token(a.nonce))
    assert not auth.csrf_ok(a.nonce, auth.csrf_token(b.nonce))
    assert not auth.csrf_ok(a.nonce, None) and not auth.csrf_ok(a.nonce, "")
