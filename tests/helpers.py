"""Test doubles and waits every test folder shares (one copy, not one per file).

- `FakeClock`: an injected clock the test moves by hand (no sleeps).
- `wait_until`: poll a condition with a deadline; fails the test with what it waited for.
- `free_port` / `free_ports`: loopback ports the OS hands out now.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

import pytest

T = TypeVar("T", float, datetime)
LOOPBACK = "127.0.0.1"


class FakeClock(Generic[T]):
    """A clock for `timer=`/`wall_clock=`/`clock=` arguments: returns `now`, moved by `tick`.

    Starts at 1000.0 (a monotonic reading) unless given a start, e.g. a datetime.
    """

    def __init__(self, start: T = 1000.0) -> None:  # type: ignore[assignment]
        self.now: T = start

    def __call__(self) -> T:
        return self.now

    def tick(self, seconds: float) -> None:
        if isinstance(self.now, datetime):
            self.now = self.now + timedelta(seconds=seconds)
        else:
            self.now = self.now + seconds


def wait_until(condition: Callable[[], object], what: str = "", timeout: float = 10.0,
               interval: float = 0.01) -> None:
    """Poll `condition` until it is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports the OS hands out now (held open together while chosen)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """A loopback port the OS says is free right now."""
    return free_ports(1)[0]
