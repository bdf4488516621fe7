"""`enforce-sdk check`: decisions from a real store, exit statuses, --timeout, misuse.

Exit 0 visible, 3 hidden, 2 on a usage/config error or when the store could
not be read (the fail-mode decision is still printed, flagged DEGRADED).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from enforce_sdk import Enforcement, Label, Source, SourceType
from enforce_sdk.cli import main
from enforce_sdk.store_client.client import LabelStoreClient
from tests.fixtures.store_server import StoreServerProcess
from tests.helpers import free_port as _free_port

REVIEW = Source("review_tool", SourceType.HUMAN, "alice")
CONFIG_TOML = """
version = 1

[store]
timeout = "30s"
retries = 1

[bloom]
enabled = true

[surfaces.home_feed]
hide_from = "limit"
fail_mode = "open"

[surfaces.home_feed.related]
creator = "remove"
domain = "block"

[surfaces.search]
hide_from = "block"
fail_mode = "closed"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "enforce.toml"
    path.write_text(CONFIG_TOML)
    return path


def check(url: str, config: Path, *args: str, token: str | None = None) -> Result:
    argv = ["check", *args, "--config", str(config), "--url", url]
    if token is not None:
        argv += ["--token", token]
    return CliRunner().invoke(main, argv)


def test_decisions_from_a_real_store(store_server: StoreServerProcess, config: Path) -> None:
    with LabelStoreClient(store_server.url, token=store_server.tokens["writer"]) as writer:
        writer.put(Label("user:43", REVIEW, Enforcement.REMOVE, "hate", datetime.now(UTC)))
    reader = store_server.tokens["reader"]
    shown = check(store_server.url, config, "pin:1", "-s", "home_feed", token=reader)
    assert shown.exit_code == 0, shown.output
    assert "DEGRADED" not in shown.stdout and shown.stderr == ""
    hidden = check(store_server.url, config, "pin:2", "-s", "home_feed", "-r", "user=43",
                   "-r", "image=9f2c", "--json", token=reader)
    assert hidden.exit_code == 3, hidden.output
    decision = json.loads(hidden.stdout)
    assert decision["decided_by"] == "user:43" and decision["enforcement"] == "remove"
    assert not decision["degraded"]
    typo = check(store_server.url, config, "pin:2", "-s", "home_feed", "-r", "domian=x.com",
                 token=reader)
    assert typo.exit_code == 2
    assert "unknown link kind 'domian'" in typo.stderr and typo.stdout == ""


@pytest.mark.parametrize(("surface", "shown"), [("home_feed", "allow"), ("search", "block")])
def test_an_unreachable_store_prints_the_fail_mode_decision_and_exits_2(
    config: Path, surface: str, shown: str
) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    done = check(url, config, "pin:1", "-s", surface)
    assert done.exit_code == 2, done.output
    assert "DEGRADED" in done.stdout and "store unreachable" in done.stdout
    assert f"pin:1 on {surface}: {shown}" in done.stdout, done.stdout
    assert done.stderr.startswith(f"Error: no labels from the label store at {url}: fail_")
    assert "Traceback" not in done.output
    as_json = check(url, config, "pin:1", "-s", surface, "--json")
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout)["degraded"] is True  # stdout stays valid JSON


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_timeout_replaces_the_configs_store_timeout(config: Path, silent_url: str) -> None:
    start = time.monotonic()
    done = check(silent_url, config, "pin:1", "-s", "home_feed", "--timeout", "0.2")
    elapsed = time.monotonic() - start
    assert done.exit_code == 2, done.output
    assert "ReadTimeout" in done.stdout
    assert elapsed < 10  # two 0.2 s requests (one retry), not two of the config's 30 s
