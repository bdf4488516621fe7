"""Run the SDK and store test suites under a CPU burner: a suite that passes only when idle flakes.

    python scripts/stress.py [--burners N] [--rounds R] [PYTEST_ARGS...]
    ./dev test --stress [...]          (the same, with the project's venv)

Starts N busy-loop processes (default: one per core) before pytest and stops
them after it, whatever happens: a failure, Ctrl-C (SIGINT) or SIGTERM. A
burner also stops on its own when this runner dies without cleaning up
(SIGKILL): it watches its parent. pytest runs R times in a row (default 1);
every round runs, and the summary lists each one. Exit status: 0 when every
round passed, pytest's first non-zero status otherwise, 130 when interrupted.

PYTEST_ARGS replace the default paths (tests/client, tests/store,
tests/store_client, tests/policy, tests/native); options such as `-x` or `-k`
may be given with or without paths.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
SUITES = ("tests/client", "tests/store", "tests/store_client", "tests/policy", "tests/native")

# One core's worth of busy loop; every ~10M iterations it checks that its parent
# (this runner) is still there, so an orphaned burner ends by itself.
BURN = """
import os
parent = os.getppid()
while os.getppid() == parent:
    for _ in range(10_000_000):
        pass
"""


def say(message: str) -> None:
    print(f"stress: {message}", file=sys.stderr, flush=True)


class Interrupted(Exception):
    """SIGINT or SIGTERM reached the runner."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def start_burners(count: int) -> list[subprocess.Popen[bytes]]:
    # A session of their own: a Ctrl-C at the terminal is the runner's to handle, not theirs.
    return [subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.DEVNULL,
                             start_new_session=True) for _ in range(count)]


def stop(procs: list[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """SIGTERM each, then SIGKILL whatever is left after `grace` seconds; reap them all."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pytest_command(args: list[str]) -> list[str]:
    paths = [a for a in args if not a.startswith("-") and (ROOT / a.split("::")[0]).exists()]
    return [sys.executable, "-m", "pytest", *([] if paths else SUITES), *args]


def run(burners: int, rounds: int, args: list[str]) -> int:
    command = pytest_command(args)
    handlers = {signum: signal.signal(signum, _on_signal)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    results: list[tuple[int, float]] = []
    procs: list[subprocess.Popen[bytes]] = []
    pytest: subprocess.Popen[bytes] | None = None
    try:
        procs = start_burners(burners)
        if procs:
            say(f"{burners} burner(s) started, pids {' '.join(str(p.pid) for p in procs)}")
        for n in range(1, rounds + 1):
            say(f"round {n}/{rounds}: {' '.join(command[1:])}")
            started = time.monotonic()
            pytest = subprocess.Popen(command, cwd=ROOT)
            code = pytest.wait()
            pytest = None
            results.append((code, time.monotonic() - started))
            say(f"round {n}/{rounds}: {'passed' if code == 0 else f'FAILED (exit {code})'}"
                f" in {results[-1][1]:.0f} s")
    except Interrupted as exc:
        say(f"interrupted by {exc}")
        if pytest is not None:
            pytest.send_signal(signal.SIGINT)  # let pytest report what it was doing
            stop([pytest], grace=30.0)
        return 128 + exc.signum
    finally:
        for signum in handlers:  # a second Ctrl-C must not cut the cleanup short
            signal.signal(signum, signal.SIG_IGN)
        stop(procs)
        say(f"{len(procs)} burner(s) stopped")
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    failed = [code for code, _ in results if code != 0]
    for n, (code, seconds) in enumerate(results, 1):
        say(f"  round {n}: {'passed' if code == 0 else f'FAILED (exit {code})'}, {seconds:.0f} s")
    say("PASSED: every round" if not failed else f"FAILED: {len(failed)} of {len(results)} rounds")
    return failed[0] if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the SDK and store tests under a CPU burner.",
        epilog="Other arguments go to pytest (paths replace the default suites).")
    parser.add_argument("--burners", type=int, default=os.cpu_count() or 1,
                        help="busy-loop processes (default: one per core)")
    parser.add_argument("--rounds", type=int, default=1, help="pytest runs in a row (default 1)")
    args, rest = parser.parse_known_args(argv)
    if args.burners < 0 or args.rounds < 1:
        parser.error("--burners must be >= 0 and --rounds >= 1")
    return run(args.burners, args.rounds, rest)


if __name__ == "__main__":
    sys.exit(main())
