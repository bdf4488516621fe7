"""Run the Label Store as a child process: for the demo, scripts and crash tests.

The child is `enforce-sdk serve` on a loopback port the OS picks (port 0); it
prints a listening line naming the real URL, which `start` waits for in the
child's log file (a file, not a pipe, so a chatty child can never block).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .._errors import EnforceError

LISTENING_PREFIX = "enforce-sdk store listening on "


class StoreProcess:
    """A running store child process: its URL, log file and ways to stop it."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (graceful shutdown), wait, and return the exit code; SIGKILL if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the crash a durable store must survive."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(15.0)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> StoreProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_store(
    config_path: str | os.PathLike[str] | None,
    *,
    log_path: str | os.PathLike[str],
    cwd: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 30.0,
    timer: Callable[[], float] = time.monotonic,
) -> StoreProcess:
    """Start `enforce-sdk serve` and return once it listens; raise EnforceError if it cannot."""
    log = Path(log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "enforce_sdk.cli", "serve", "--host", host, "--port", str(port),
            "--no-access-log", "--log-level", "warning", *extra_args]
    if config_path is not None:
        args += ["--config", os.fspath(config_path)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, cwd=cwd, env=env)
    deadline = timer() + startup_timeout
    while True:
        text = log.read_text(errors="replace") if log.exists() else ""
        for line in text.splitlines():
            if line.startswith(LISTENING_PREFIX):
                return StoreProcess(process, line[len(LISTENING_PREFIX):].strip(), log)
        code = process.poll()
        if code is not None or timer() > deadline:
            if code is None:
                process.kill()
                process.wait()
            tail = "\n".join(text.splitlines()[-15:])
            reason = f"exited with {code}" if code is not None else "did not start in time"
            raise EnforceError(f"the Label Store {reason}; its log ({log}):\n{tail}")
        time.sleep(0.05)
