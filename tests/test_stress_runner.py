"""scripts/stress.py: burners start before pytest and are gone after it, however it ends."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]

RUNNER = Path(__file__).resolve().parents[1] / "scripts" / "stress.py"
PIDS_RE = re.compile(r"burner\(s\) started, pids ([\d ]+)")


def _burner_pids(stderr: str) -> list[int]:
    match = PIDS_RE.search(stderr)
    assert match, stderr
    return [int(p) for p in match.group(1).split()]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _run(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    test = tmp_path / "test_inner.py"
    test.write_text(body)
    return subprocess.run(
        [sys.executable, str(RUNNER), "--burners", "1", *args, str(test), "-q",
         "-p", "no:cacheprovider"],
        capture_output=True, text=True, timeout=300, check=False)


def test_a_failing_suite_fails_the_run_and_stops_the_burners(tmp_path: Path) -> None:
    result = _run(tmp_path, "def test_fails():\n    assert 1 == 2\n", "--rounds", "2")
    assert result.returncode == 1, result.stderr
    assert "FAILED: 2 of 2 rounds" in result.stderr
    assert not any(_alive(pid) for pid in _burner_pids(result.stderr))


def test_a_passing_suite_passes(tmp_path: Path) -> None:
    result = _run(tmp_path, "def test_passes():\n    assert True\n")
    assert result.returncode == 0, result.stderr
    assert "PASSED: every round" in result.stderr
    assert not any(_alive(pid) for pid in _burner_pids(result.stderr))


def test_an_interrupt_stops_pytest_and_the_burners(tmp_path: Path) -> None:
    marker = tmp_path / "running"
    test = tmp_path / "test_blocks.py"
    test.write_text(
        "import time\nfrom pathlib import Path\n\n"
        f"def test_blocks():\n    Path({str(marker)!r}).touch()\n    time.sleep(600)\n")
    runner = subprocess.Popen(
        [sys.executable, str(RUNNER), "--burners", "1", str(test), "-q",
         "-p", "no:cacheprovider"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():  # the inner test is running: pytest and burner are up
            assert runner.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        children = psutil.Process(runner.pid).children(recursive=True)
        runner.send_signal(signal.SIGINT)  # as Ctrl-C
        _, stderr = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert runner.returncode == 130, stderr
    assert "interrupted by SIGINT" in stderr
    assert set(_burner_pids(stderr)) <= {c.pid for c in children}
    assert not any(_alive(c.pid) for c in children)  # burner, pytest and anything it started
