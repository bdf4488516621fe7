"""`enforce-sdk serve --storage redis-cluster://...` serves labels from the real cluster."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from enforce_sdk import Enforcement, Label, Source, SourceType
from enforce_sdk.cli import main
from enforce_sdk.store_client.client import LabelStoreClient
from tests.fixtures.redis_cluster import ClusterHarness, drop_namespace
from tests.fixtures.store_server import LISTENING_RE, StoreServerProcess
from tests.helpers import free_port


def test_serve_with_storage_flag_reads_and_writes_the_cluster(
    tmp_path: Path, redis_cluster: ClusterHarness
) -> None:
    namespace = "cli" + uuid.uuid4().hex[:10]
    url = f"{redis_cluster.url}?namespace={namespace}"
    # the config names SQLite: --storage must override it
    cfg = StoreServerProcess(tmp_path / "cfg")  # writes store.toml with tokens, no server
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "enforce_sdk.cli", "serve", "--config", str(cfg.config_path),
         "--storage", url, "--port", str(port), "--no-access-log"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not LISTENING_RE.search((tmp_path / "serve.log").read_text(errors="replace")):
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            if time.monotonic() > deadline:
                pytest.fail("enforce-sdk serve --storage did not start")
            time.sleep(0.05)
        label = Label("pin:1", Source("review_tool", SourceType.HUMAN, "a"), Enforcement.BLOCK,
                      "spam", datetime(2026, 1, 1, tzinfo=UTC))
        with LabelStoreClient(f"http://127.0.0.1:{port}", token=cfg.tokens["admin"]) as store:
            store.put(label)
            assert store.get("pin:1").labels == [label]
        assert not cfg.db_path.exists()  # nothing went to the config's SQLite file
    finally:
        proc.kill()
        proc.wait(10)
        log.close()
        drop_namespace(redis_cluster.startup_nodes, namespace)


def test_unknown_storage_scheme_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["serve", "--storage", "mongodb://x"])
    assert result.exit_code == 2
    assert "unknown storage scheme 'mongodb'" in result.output


def test_db_and_storage_together_are_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["serve", "--db", str(tmp_path / "x.db"), "--storage", "sqlite:///tmp/y.db"]
    )
    assert result.exit_code == 2
    assert "not both" in result.output
