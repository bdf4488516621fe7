"""Starting the store: the in-thread helper, open_storage on SQLite, and CLI failures."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx

from enforce_sdk import Enforcement, Label, Source, SourceType
from enforce_sdk.store import SQLiteStorage, StoreConfig, open_storage
from enforce_sdk.store.server import start_in_thread
from enforce_sdk.store_client.client import LabelStoreClient


def test_sqlite_url_opens_sqlite_storage_and_creates_the_directory(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "dir" / "labels.db"
    storage = open_storage(f"sqlite://{db}")
    try:
        assert isinstance(storage, SQLiteStorage)
        assert storage.head_seq() == 0
    finally:
        storage.close()
    assert db.exists()


def test_start_in_thread_serves_and_stops(tmp_path: Path) -> None:
    config = StoreConfig.from_dict({
        "storage": {"url": f"sqlite://{tmp_path / 'labels.db'}"},
        "tokens": [{"name": "w", "role": "writer", "token": "writer-token", "sources": ["*"]}],
    })
    label = Label("pin:1", Source("m", SourceType.AUTOMATED, "v1"), Enforcement.BLOCK, "spam",
                  datetime(2026, 1, 1, tzinfo=UTC))
    with start_in_thread(config) as server:
        assert server.url.startswith("http://127.0.0.1:")
        with LabelStoreClient(server.url, token="writer-token") as c:
            c.put(label)
            assert c.get_many(["pin:1"]) == {"pin:1": [label]}
    assert not server._thread.is_alive()
    reopened = SQLiteStorage(tmp_path / "labels.db")  # the server closed its handle cleanly
    try:
        assert reopened.head_seq() == 1
    finally:
        reopened.close()


def run_main(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "enforce_sdk.store", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_cli_rejects_a_bad_config_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "store.toml"
    path.write_text("[limits]\nmax_batch_keys = 0\n")
    result = run_main("--config", str(path), "--port", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "limits.max_batch_keys" in result.stderr
    assert "listening" not in result.stdout


def test_cli_rejects_an_unknown_storage_scheme(tmp_path: Path) -> None:
    path = tmp_path / "store.toml"
    path.write_text('[storage]\nurl = "mysql://db/labels"\n')
    result = run_main("--config", str(path), "--port", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown storage scheme 'mysql'" in result.stderr


def test_db_and_storage_override_the_url_and_keep_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "store.toml"
    path.write_text('[storage]\nurl = "mysql://db/labels"\nexpired_grace_seconds = 5\n')
    both = run_main("--config", str(path), "--db", "x.db", "--storage", "sqlite:///y.db",
                    cwd=tmp_path)
    assert both.returncode == 2 and "not both" in both.stderr
    bad = run_main("--config", str(path), "--storage", "nope:/x", "--port", "0", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown storage scheme 'nope'" in bad.stderr
    # --db replaces the (bad) configured URL; the store starts on it and serves.
    proc = subprocess.Popen(
        [sys.executable, "-m", "enforce_sdk.store", "--config", str(path), "--db", "d/labels.db",
         "--port", "0", "--no-access-log"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = ""
        while "listening on" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "the store exited"
        url = line.split("listening on", 1)[1].strip()
        assert httpx.get(url + "/readyz", timeout=5).status_code == 200
        assert (tmp_path / "d" / "labels.db").exists()
    finally:
        proc.terminate()
        proc.wait(20)
