"""The demo end to end (small sample), and that it always stops its store."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from enforce_sdk.cli import main
from enforce_sdk.demo.context import DemoContext
from enforce_sdk.demo.steps import STEPS, Step, run_demo
from enforce_sdk.demo.store_process import LISTENING_PREFIX
from enforce_sdk.store.server import LISTENING_PREFIX as SERVER_LISTENING_PREFIX


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_listening_line_matches_server() -> None:
    assert LISTENING_PREFIX == SERVER_LISTENING_PREFIX


def test_demo_runs_every_step_and_stops_the_store(tmp_path: Path) -> None:
    lines: list[str] = []
    assert run_demo(workdir=tmp_path / "demo", count=300, seed=1, out=lines.append) == 0
    text = "\n".join(lines)
    for number, step in enumerate(STEPS, start=1):
        assert f"== {number}. {step.title}" in text
    assert "no-op:          " in text and "written:        0" in text  # idempotent re-import
    assert "line 2: source.type: must be 'human' or 'automated'" in text
    assert "pending labels left on" in text and text.count("1 labels pending review") == 1
    assert re.search(r"dismiss=1 +pend=1 +put=\d+", text)
    # the console step signs the demo reviewer in and reads per-surface decisions
    assert "signed in as demo-reviewer" in text
    assert re.search(r"on home_feed: \w+ \((visible|hidden)\)", text)
    assert "review queue: 1 held label(s)" in text
    pid = int(re.search(r"pid (\d+)", text).group(1))  # type: ignore[union-attr]
    assert not _pid_alive(pid)
    assert (tmp_path / "demo" / "labels.db").exists()  # --dir keeps the files


def test_demo_stops_the_store_when_a_step_fails(tmp_path: Path) -> None:
    def boom(ctx: DemoContext) -> None:
        raise RuntimeError("step failed")

    lines: list[str] = []
    with pytest.raises(RuntimeError, match="step failed"):
        run_demo(workdir=tmp_path, count=50, out=lines.append,
                 steps=[*STEPS[:3], Step("boom", boom)])
    pid = int(re.search(r"pid (\d+)", "\n".join(lines)).group(1))  # type: ignore[union-attr]
    assert not _pid_alive(pid)
    assert any("store stopped cleanly" in line for line in lines)
    assert not any("exited with" in line for line in lines)


def test_demo_command_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import enforce_sdk.demo.steps as demo_module

    monkeypatch.setattr(demo_module, "STEPS", STEPS[:4])  # the full tour is tested above
    result = CliRunner().invoke(main, ["demo", "--labels", "100", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "== 4. Import each producer's labels" in result.output
    assert "demo done in" in result.output

    def fails(ctx: DemoContext) -> None:
        ctx.failures.append("something did not go as shown")

    monkeypatch.setattr(demo_module, "STEPS", [*STEPS[:3], Step("fails", fails)])
    result = CliRunner().invoke(main, ["demo", "--labels", "50", "--dir", str(tmp_path)])
    assert result.exit_code == 1 and "demo FAILED" in result.output
