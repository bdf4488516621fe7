"""`enforce-sdk labels ...` through click's CliRunner against a real Label Store."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from enforce_sdk import Label
from enforce_sdk.cli import main
from enforce_sdk.demo.sample import sample_labels
from enforce_sdk.store_client.client import LabelStoreClient
from tests.fixtures.store_server import StoreServerProcess
from tests.helpers import free_port as _free_port


def invoke(server: StoreServerProcess | None, *args: str, role: str = "writer",
           stdin: bytes | None = None) -> Result:
    env = {}
    if server is not None:
        env = {"ENFORCE_STORE_URL": server.url, "ENFORCE_STORE_TOKEN": server.tokens[role]}
    return CliRunner().invoke(main, list(args), env=env, input=stdin, catch_exceptions=False)


def test_put_get_history_rm(store_server: StoreServerProcess) -> None:
    put = invoke(store_server, "labels", "put", "PIN:77 ", "--source", "review_tool/human/rev-1",
                 "--enforcement", "block", "--reason", "porn", "--ttl", "7d",
                 "--meta", "ticket=TS-1", "--meta", "appeal=false")
    assert put.exit_code == 0, put.output
    assert put.output.strip() == "written: pin:77 review_tool/human/rev-1"
    again = invoke(store_server, "labels", "put", "pin:77", "--source", "review_tool/human/rev-1",
                   "--enforcement", "limit", "--reason", "spam", "--json")
    assert json.loads(again.output)["outcome"] == "written"

    got = invoke(store_server, "labels", "get", "pin:77", "--json", role="reader")
    assert got.exit_code == 0
    body = json.loads(got.output)
    assert [lb["enforcement"] for lb in body["labels"]] == ["limit"]
    text = invoke(store_server, "labels", "get", "pin:77", role="reader").output
    assert "pin:77: 1 active, 0 pending" in text and "review_tool/human/rev-1" in text

    hist = json.loads(invoke(store_server, "labels", "history", "pin:77", "--json",
                             role="reader").output)
    events = hist["events"]
    assert [e["action"] for e in events] == ["put", "put"]
    assert events[0]["before"]["enforcement"] == "block"
    assert events[0]["after"]["enforcement"] == "limit"
    assert events[0]["actor"] == "test-writer"
    assert events[0]["seq"] > events[1]["seq"]
    assert events[1]["after"]["metadata"] == {"ticket": "TS-1", "appeal": False}

    rm = invoke(store_server, "labels", "rm", "pin:77", "--source", "review_tool/human/rev-1")
    assert rm.exit_code == 0 and rm.output.startswith("deleted: pin:77")
    rm2 = invoke(store_server, "labels", "rm", "pin:77", "--source", "review_tool/human/rev-1")
    assert rm2.output.startswith("not_found:")
    assert json.loads(invoke(store_server, "labels", "get", "pin:77", "--json",
                             role="reader").output)["labels"] == []


def test_pending_lists_automated_negatives_on_trusted_entities(
        store_server: StoreServerProcess) -> None:
    put = invoke(store_server, "labels", "put", "user:42", "--source",
                 "bot_detector/automated/stream", "--enforcement", "block", "--reason", "spam",
                 "--confidence", "0.97")
    assert put.output.startswith("pending: user:42")
    page = json.loads(invoke(store_server, "labels", "pending", "--json", role="reader").output)
    assert [p["label"]["entity"] for p in page["pending"]] == ["user:42"]
    assert "1 labels pending review" in invoke(store_server, "labels", "pending",
                                                role="reader").output


def test_invalid_label_exits_1_without_traceback(store_server: StoreServerProcess) -> None:
    result = invoke(store_server, "labels", "put", "pin:1", "--source", "x/robot/y",
                    "--enforcement", "block", "--reason", "spam")
    assert result.exit_code == 1
    assert "source.type" in result.stderr and "Traceback" not in result.output
    result = invoke(store_server, "labels", "put", "pin:1", "--source", "a/human/b",
                    "--enforcement", "block", "--reason", "spam", "--confidence", "1.5")
    assert result.exit_code == 1 and "confidence" in result.stderr
    # Every wrong field is named, not only the first.
    result = invoke(store_server, "labels", "put", "bad key!", "--source", "x/robot/y",
                    "--enforcement", "block", "--reason", "Not A Reason", "--confidence", "7")
    assert result.exit_code == 1
    for field in ("source.type", "entity", "reason", "confidence"):
        assert field in result.stderr, (field, result.stderr)
    # Over the store's configured metadata limit (512 bytes in the fixture): the store says 413.
    result = invoke(store_server, "labels", "put", "pin:1", "--source", "a/human/b",
                    "--enforcement", "block", "--reason", "spam", "--meta", "note=" + "x" * 600)
    assert result.exit_code == 1 and "413" in result.stderr


def test_usage_and_connection_errors_exit_2(store_server: StoreServerProcess) -> None:
    assert invoke(store_server, "labels", "get", "not-a-key").exit_code == 2
    assert invoke(store_server, "labels", "put", "pin:1").exit_code == 2  # missing options
    bad_token = CliRunner().invoke(main, ["labels", "get", "pin:1", "--url", store_server.url,
                                          "--token", "wrong-token-123"])
    assert bad_token.exit_code == 2 and "401" in bad_token.stderr
    assert "ENFORCE_STORE_TOKEN" in bad_token.stderr
    reader_writes = invoke(store_server, "labels", "rm", "pin:1", "--source", "a/human/b",
                           role="reader")
    assert reader_writes.exit_code == 2 and "403" in reader_writes.stderr
    assert "has role reader; this needs writer" in reader_writes.stderr
    assert reader_writes.stderr.count("role") == 1  # said once, not repeated by a hint
    down = CliRunner().invoke(main, ["labels", "get", "pin:1", "--url",
                                     f"http://127.0.0.1:{_free_port()}", "--token", "t",
                                     "--timeout", "2"])
    assert down.exit_code == 2 and "cannot reach the label store" in down.stderr
    assert down.exception is None or isinstance(down.exception, SystemExit)


def _served(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """The rows the store serves now: it skips labels past their expires_at (most samples)."""
    now = datetime.now(UTC)
    return [r for r in rows if not Label.from_dict(r).is_expired(now)]


def _write_jsonl(path: Path, n: int, seed: int) -> list[dict[str, object]]:
    rows = [lb.to_dict() for lb in sample_labels(n, seed=seed)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_import_is_idempotent(store_server: StoreServerProcess, tmp_path: Path) -> None:
    source = tmp_path / "labels.jsonl"
    rows = _write_jsonl(source, 450, seed=21)
    first = invoke(store_server, "labels", "import", str(source), "--chunk-size", "100", "--json")
    assert first.exit_code == 0, first.output + first.stderr
    summary = json.loads(first.output)
    assert (summary["written"], summary["noop"], summary["chunks"]) == (450, 0, 5)
    second = invoke(store_server, "labels", "import", str(source), "--chunk-size", "100", "--json")
    summary = json.loads(second.output)
    assert (summary["written"], summary["noop"], summary["rejected"]) == (0, 450, 0)
    with LabelStoreClient(store_server.url, token=store_server.tokens["reader"]) as client:
        stored = client.get_many(sorted({str(r["entity"]) for r in rows}))
    assert 0 < sum(len(v) for v in stored.values()) == len(_served(rows))


def test_import_reports_rejected_chunk_and_continues(
        store_server: StoreServerProcess, tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    rows = [lb.to_dict() for lb in sample_labels(30, seed=5)]
    rows[12] = dict(rows[12], enforcement="obliterate")
    lines = [json.dumps(r) for r in rows]
    lines[25] = "{oops"
    source.write_text("\n".join(lines) + "\n")
    result = invoke(store_server, "labels", "import", str(source), "--chunk-size", "10")
    assert result.exit_code == 1
    assert "rejected:       20 in 2 chunks" in result.output
    assert "line 13: enforcement: unknown enforcement 'obliterate'" in result.output
    assert "line 26: label: not valid JSON" in result.output
    with LabelStoreClient(store_server.url, token=store_server.tokens["reader"]) as client:
        present = {(e, lb.source.key) for e, lbs in
                   client.get_many(sorted({str(r["entity"]) for r in rows})).items() for lb in lbs}
    keys = [(str(r["entity"]), "/".join(r["source"].values())) for r in rows]  # type: ignore[attr-defined]
    served = _served(rows[:10])
    assert served and all(keys[rows.index(r)] in present for r in served)
    assert not any(k in present for k in keys[10:])  # chunks 1 and 2: nothing half-way
    strict = invoke(store_server, "labels", "import", str(source), "--chunk-size", "10",
                    "--strict", "--no-checkpoint")
    assert strict.exit_code == 1 and "rejected (strict)" in strict.output


def test_import_from_stdin_msgpack(store_server: StoreServerProcess) -> None:
    import msgpack

    labels = list(sample_labels(60, seed=8))
    data = b"".join(msgpack.packb(lb.to_wire(), datetime=True) for lb in labels)
    result = invoke(store_server, "labels", "import", "-", "--json", stdin=data)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.output)["written"] == 60


def test_import_resume_after_interruption(store_server: StoreServerProcess,
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupt after k chunks (the store becomes unreachable), resume: all present once."""
    from enforce_sdk import StoreUnavailableError
    from enforce_sdk.store_client.client import LabelStoreClient as RealClient

    source = tmp_path / "labels.jsonl"
    rows = _write_jsonl(source, 400, seed=31)
    calls = {"n": 0}
    real_put = RealClient.put

    def flaky_put(self: RealClient, labels: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] > 3:
            raise StoreUnavailableError("connection refused (simulated)")
        return real_put(self, labels, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(RealClient, "put", flaky_put)
    first = invoke(store_server, "labels", "import", str(source), "--chunk-size", "50",
                   "--retries", "0")
    assert first.exit_code == 2
    assert "150 records done" in first.stderr and "--resume" in first.stderr
    monkeypatch.setattr(RealClient, "put", real_put)

    resumed = invoke(store_server, "labels", "import", str(source), "--resume", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    summary = json.loads(resumed.output)
    assert summary["resumed_after"] == 150 and summary["written"] == 400
    assert summary["noop"] == 0  # the first 150 were not sent again
    with LabelStoreClient(store_server.url, token=store_server.tokens["reader"]) as client:
        for row in rows[::37]:
            events = client.history(str(row["entity"]), limit=100).events
            mine = [e for e in events if e.source_key == "/".join(row["source"].values())]  # type: ignore[attr-defined]
            assert len(mine) == 1  # written exactly once
        stored = client.get_many(sorted({str(r["entity"]) for r in rows}))
    assert 0 < sum(len(v) for v in stored.values()) == len(_served(rows))


def test_resume_needs_checkpoint_for_stdin(store_server: StoreServerProcess) -> None:
    result = invoke(store_server, "labels", "import", "-", "--resume", stdin=b"")
    assert result.exit_code == 2 and "--checkpoint" in result.stderr


def test_chunk_bigger_than_store_batch_limit_is_a_usage_error(
        store_server: StoreServerProcess, tmp_path: Path) -> None:
    source = tmp_path / "labels.jsonl"
    _write_jsonl(source, 250, seed=2)  # the fixture's store takes at most 200 per batch
    result = invoke(store_server, "labels", "import", str(source), "--chunk-size", "250")
    assert result.exit_code == 2
    assert "smaller --chunk-size" in result.stderr and "200" in result.stderr


def test_out_of_range_times_are_one_line_errors_not_tracebacks(
        store_server: StoreServerProcess, tmp_path: Path) -> None:
    put = ("labels", "put", "pin:1", "--source", "a/human/b", "--enforcement", "block",
           "--reason", "spam")
    late = invoke(store_server, *put, "--created-at", "9999-12-31T23:59:59-01:00")
    assert late.exit_code == 1 and "created_at" in late.stderr and "years 1..9999" in late.stderr
    far = invoke(store_server, *put, "--ttl", "999999999d")
    assert far.exit_code == 1 and "past year 9999" in far.stderr, far.stderr
    huge = invoke(store_server, *put, "--ttl", "1e999d")
    assert huge.exit_code == 2 and "--ttl" in huge.stderr
    rows = [lb.to_dict() for lb in sample_labels(3, seed=9)]
    rows[1] = dict(rows[1], created_at="0001-01-01T00:00:00+01:00")
    source = tmp_path / "times.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = invoke(store_server, "labels", "import", str(source), "--chunk-size", "1")
    assert result.exit_code == 1 and "line 2: created_at:" in result.output
    assert "Traceback" not in result.output + result.stderr
