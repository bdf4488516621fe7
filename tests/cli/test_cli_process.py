"""The CLI as a real process: stdin import, exit codes, messages, and kill -9 of the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

from enforce_sdk import Label
from enforce_sdk.demo.sample import sample_labels
from enforce_sdk.model.records import Action
from enforce_sdk.store import SQLiteStorage
from enforce_sdk.store_client.client import LabelStoreClient
from tests.fixtures.store_server import StoreServerProcess
from tests.helpers import wait_until

CLI = [sys.executable, "-m", "enforce_sdk.cli"]


def run_cli(server: StoreServerProcess, *args: str, stdin: bytes | None = None,
            role: str = "writer", timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ENFORCE_STORE_URL=server.url, ENFORCE_STORE_TOKEN=server.tokens[role])
    return subprocess.run([*CLI, *args], input=stdin.decode() if stdin else None, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_import_from_stdin_and_read_back(store_server: StoreServerProcess) -> None:
    labels = list(sample_labels(120, seed=3))
    data = "".join(json.dumps(lb.to_dict()) + "\n" for lb in labels).encode()
    done = run_cli(store_server, "labels", "import", "--chunk-size", "40", "--json", stdin=data)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["written"], summary["chunks"], summary["complete"]) == (120, 3, True)
    assert done.stderr == ""  # no progress bar when stderr is not a terminal
    got = run_cli(store_server, "labels", "get", labels[0].entity, "--json", role="reader")
    stored = [Label.from_dict(d) for d in json.loads(got.stdout)["labels"]]
    assert labels[0] in stored


def test_progress_bar_on_request(store_server: StoreServerProcess, tmp_path: Path) -> None:
    source = tmp_path / "l.jsonl"
    source.write_text("".join(json.dumps(lb.to_dict()) + "\n" for lb in sample_labels(50)))
    done = run_cli(store_server, "labels", "import", str(source), "--progress")
    assert done.returncode == 0 and "import" in done.stderr and "100%" in done.stderr


def test_connection_error_is_one_clear_line(tmp_path: Path) -> None:
    env = dict(os.environ, ENFORCE_STORE_URL="http://127.0.0.1:9", ENFORCE_STORE_TOKEN="t")
    done = subprocess.run([*CLI, "labels", "pending", "--timeout", "2"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("Error: cannot reach the label store at http://127.0.0.1:9")


def test_serve_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[limits]\nmax_batch_labels = 0\nnope = 1\n")
    done = subprocess.run([*CLI, "serve", "--config", str(config), "--port", "0"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "limits.max_batch_labels" in done.stderr and "limits.nope" in done.stderr


CHUNK = 50
TOTAL = 10_000


def _tagged_labels() -> list[Label]:
    """Sample labels whose metadata names the import chunk they travel in."""
    out = []
    for i, label in enumerate(sample_labels(TOTAL, seed=99)):
        meta = dict(label.metadata, chunk=i // CHUNK)
        # Expiring ten years later than sampled: the store serves no expired label, and
        # this test reads every chunk back whole.
        expires = None if label.expires_at is None else label.expires_at + timedelta(days=3650)
        out.append(Label(label.entity, label.source, label.enforcement, label.reason,
                         label.created_at, expires, label.confidence, meta))
    return out


def _chunks_done(checkpoint: Path) -> int:
    try:
        return int(json.loads(checkpoint.read_text())["chunks_done"])
    except (OSError, ValueError, KeyError):
        return 0


def test_kill_9_store_during_import(store_server: StoreServerProcess, tmp_path: Path) -> None:
    """SIGKILL the store mid-import; acknowledged chunks survive, no chunk is half-stored,
    audit and change feed agree with the labels; a resume then completes exactly once."""
    labels = _tagged_labels()
    source = tmp_path / "bulk.jsonl"
    source.write_text("".join(json.dumps(lb.to_dict()) + "\n" for lb in labels))
    checkpoint = tmp_path / "bulk.checkpoint.json"
    env = dict(os.environ, ENFORCE_STORE_URL=store_server.url,
               ENFORCE_STORE_TOKEN=store_server.tokens["writer"])
    importer = subprocess.Popen(
        [*CLI, "labels", "import", str(source), "--chunk-size", str(CHUNK), "--checkpoint",
         str(checkpoint), "--retries", "0", "--timeout", "5"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _chunks_done(checkpoint) >= 10, "10 acknowledged chunks", 60)
        store_server.kill()
        out, err = importer.communicate(timeout=60)
    finally:
        if importer.poll() is None:
            importer.kill()
    assert importer.returncode == 2, out + err
    assert "Traceback" not in err and "--resume" in err
    acked = json.loads(checkpoint.read_text())
    acked_records = int(acked["records_done"])
    assert 10 * CHUNK <= acked_records < TOTAL, "the store was killed after the import ended"
    print(f"killed after {acked_records} acknowledged records of {TOTAL}")

    store_server.start()  # same port, same database
    entities = sorted({lb.entity for lb in labels})
    with LabelStoreClient(store_server.url, token=store_server.tokens["reader"],
                          max_batch_keys=500) as client:
        stored = client.get_many(entities)
    stored_by_key = {(e, lb.source.key): lb for e, lbs in stored.items() for lb in lbs}
    # 1. Everything the importer had acknowledged is there, exactly as sent.
    for label in labels[:acked_records]:
        assert stored_by_key.get(label.key) == label
    # 2. No partial chunk: each chunk is entirely present or entirely absent.
    per_chunk = Counter(int(lb.metadata["chunk"]) for lb in stored_by_key.values())  # type: ignore[arg-type]
    for chunk, count in per_chunk.items():
        expected = len(labels[chunk * CHUNK:(chunk + 1) * CHUNK])
        assert count == expected, f"chunk {chunk} is half-stored: {count}/{expected}"
    present_chunks = set(per_chunk)
    assert set(range(acked_records // CHUNK)) <= present_chunks
    # At most the one chunk in flight at the kill may be stored without acknowledgement.
    assert max(present_chunks) <= acked_records // CHUNK

    # 3. Resume against the restarted store: everything present, each label written once.
    done = run_cli(store_server, "labels", "import", str(source), "--checkpoint", str(checkpoint),
                   "--resume", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["complete"] and summary["resumed_after"] == acked_records
    assert summary["written"] + summary["noop"] == TOTAL and summary["rejected"] == 0
    store_server.stop()

    storage = SQLiteStorage(store_server.db_path)
    try:
        _assert_audit_and_feed_consistent(storage, labels)
    finally:
        storage.close()


def _assert_audit_and_feed_consistent(storage: SQLiteStorage, labels: list[Label]) -> None:
    expected = {lb.key: lb for lb in labels}
    rows = storage.get_many({lb.entity for lb in labels})
    stored = {(e, s.label.source.key): s for e, lst in rows.items() for s in lst}
    assert {k: s.label for k, s in stored.items()} == expected
    # The change feed: strictly increasing seq, one put per label (exactly once), nothing else.
    changes = []
    after = 0
    while True:
        page = storage.changes(after, limit=1000)
        if not page.changes:
            break
        changes.extend(page.changes)
        after = page.changes[-1].seq
    seqs = [c.seq for c in changes]
    assert seqs == sorted(set(seqs)) and seqs[-1] == storage.head_seq()
    assert Counter((c.entity, c.source_key) for c in changes) == Counter(expected.keys())
    assert all(c.action is Action.PUT and c.labeled for c in changes)
    change_seq = {(c.entity, c.source_key): c.seq for c in changes}
    # The audit trail: the latest event of every label matches it and its change record.
    for entity in {lb.entity for lb in labels}:
        events = storage.history(entity, limit=1000)
        latest: dict[str, object] = {}
        for event in events:  # newest first
            latest.setdefault(event.source_key, event)
        for source_key, event in latest.items():
            key = (entity, source_key)
            assert event.after == expected[key]  # type: ignore[attr-defined]
            assert event.seq == change_seq[key] == stored[key].seq  # type: ignore[attr-defined]
        assert len(events) == len(latest)  # one event per label: nothing written twice


def test_serve_on_db_path_without_config(tmp_path: Path) -> None:
    import httpx

    from enforce_sdk.demo.store_process import start_store

    db = tmp_path / "x" / "labels.db"
    store = start_store(None, log_path=tmp_path / "serve.log", cwd=tmp_path,
                        extra_args=["--db", str(db)])
    try:
        assert httpx.get(store.url + "/readyz").json()["status"] == "ready"
        assert httpx.get(store.url + "/v1/pending").status_code == 401  # no tokens configured
        assert db.exists()
        assert "no [[tokens]] configured" in store.log_text()
    finally:
        assert store.stop() in (0, -15)
