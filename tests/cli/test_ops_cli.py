"""`tokens new`, `changes tail`, `bloom rebuild`, `--json` on `labels rm` and `bloom build`,
against a real Label Store process where they talk to one."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner, Result

from enforce_sdk import Enforcement, Label, Source, SourceType
from enforce_sdk.cli import main
from enforce_sdk.store.config import StoreConfig, hash_token
from enforce_sdk.store_client.client import LabelStoreClient
from tests.fixtures.store_server import StoreServerProcess

REVIEW = Source("review_tool", SourceType.HUMAN, "alice")


def run(*args: str, server: StoreServerProcess | None = None, role: str = "admin") -> Result:
    env = {} if server is None else {"ENFORCE_STORE_URL": server.url,
                                     "ENFORCE_STORE_TOKEN": server.tokens[role]}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_tokens_new_prints_a_token_and_an_entry_the_store_accepts() -> None:
    made = run("tokens", "new", "--name", "spam-batch", "--role", "writer",
               "--sources", "spam_model/automated", "--json")
    assert made.exit_code == 0, made.output
    answer = json.loads(made.output)
    config = StoreConfig.from_dict(tomllib.loads(answer["config_entry"]))
    [entry] = config.tokens
    assert entry.name == "spam-batch" and entry.token_sha256 == hash_token(answer["token"])
    assert entry.may_write_as("spam_model", "automated")
    assert not entry.may_write_as("review_tool", "human")
    text = run("tokens", "new", "--name", "feed", "--role", "reader")
    assert text.exit_code == 0 and "[[tokens]]" in text.output
    assert run("tokens", "new", "--name", "x", "--role", "writer").exit_code == 2
    assert run("tokens", "new", "--name", "x", "--role", "reader",
               "--sources", "a/human").exit_code == 2
    bad = run("tokens", "new", "--name", "bad name", "--role", "writer", "--sources", "x/robot")
    assert bad.exit_code == 2
    assert "tokens[0].name" in bad.output and "tokens[0].sources[0]" in bad.output


def test_changes_tail_prints_the_feed_from_a_position(store_server: StoreServerProcess) -> None:
    with LabelStoreClient(store_server.url, token=store_server.tokens["writer"]) as writer:
        now = datetime.now(UTC)
        writer.put([Label("pin:1", REVIEW, Enforcement.BLOCK, "spam", now),
                    Label("pin:2", REVIEW, Enforcement.LIMIT, "spam", now)])
        writer.delete("pin:1", REVIEW)
    lines = run("changes", "tail", "--from", "0", "--no-follow", "--json",
                server=store_server, role="reader")
    assert lines.exit_code == 0, lines.output
    records = [json.loads(line) for line in lines.output.splitlines()]
    assert [(r["seq"], r["entity"], r["action"], r["labeled"]) for r in records] == [
        (1, "pin:1", "put", True), (2, "pin:2", "put", True), (3, "pin:1", "delete", False)]
    text = run("changes", "tail", "--from", "2", "--no-follow", server=store_server,
               role="reader")
    assert text.exit_code == 0 and "(no labels left)" in text.output
    assert len(text.output.splitlines()) == 1
    new_only = run("changes", "tail", "--no-follow", server=store_server, role="reader")
    assert new_only.exit_code == 0 and new_only.output == ""


def test_bloom_rebuild_needs_an_admin(store_server: StoreServerProcess) -> None:
    with LabelStoreClient(store_server.url, token=store_server.tokens["writer"]) as writer:
        writer.put([Label("pin:1", REVIEW, Enforcement.BLOCK, "spam", datetime.now(UTC))])
    done = run("bloom", "rebuild", "--json", server=store_server)
    assert done.exit_code == 0, done.output
    figures = json.loads(done.output)
    assert (figures["key_count"], figures["seq"]) == (1, 1) and figures["size_bytes"] > 0
    text = run("bloom", "rebuild", server=store_server)
    assert text.exit_code == 0 and "key_count=1" in text.output
    refused = run("bloom", "rebuild", server=store_server, role="reader")
    assert refused.exit_code == 2 and "403" in refused.output


def test_json_on_labels_rm_and_bloom_build(store_server: StoreServerProcess,
                                           tmp_path: Path) -> None:
    with LabelStoreClient(store_server.url, token=store_server.tokens["writer"]) as writer:
        writer.put([Label("pin:9", REVIEW, Enforcement.BLOCK, "spam", datetime.now(UTC))])
    removed = run("labels", "rm", "PIN:9", "--source", REVIEW.key, "--json",
                  server=store_server, role="writer")
    assert removed.exit_code == 0, removed.output
    assert json.loads(removed.output) == {"entity": "pin:9", "source": REVIEW.key,
                                          "outcome": "deleted"}
    keys = tmp_path / "keys.txt"
    keys.write_text("pin:1\npin:2\n")
    built = run("bloom", "build", "--from", str(keys), "--out", str(tmp_path / "b.bloom"),
                "--json")
    assert built.exit_code == 0, built.output
    info = json.loads(built.output)
    assert info["keys_read"] == 2 and info["path"] == str(tmp_path / "b.bloom")


def test_labels_retract_file_retracts_the_listed_pairs(store_server: StoreServerProcess,
                                                       tmp_path: Path) -> None:
    now = datetime.now(UTC)
    other = Source("spam_model", SourceType.AUTOMATED, "v3")
    with LabelStoreClient(store_server.url, token=store_server.tokens["writer"]) as writer:
        writer.put([Label("pin:1", REVIEW, Enforcement.BLOCK, "spam", now),
                    Label("pin:2", REVIEW, Enforcement.BLOCK, "spam", now),
                    Label("pin:2", other, Enforcement.LIMIT, "spam", now)])
        head = writer.changes(0, limit=1).head
    listing = tmp_path / "retract.jsonl"
    listing.write_text("\n".join([
        json.dumps(Label("PIN:1", REVIEW, Enforcement.BLOCK, "spam", now).to_dict()),
        json.dumps({"entity": "pin:2", "source": REVIEW.key}),
        json.dumps({"entity": "pin:3", "source": REVIEW.key}),  # nothing there
    ]) + "\n")
    dry = run("labels", "retract", str(listing), "--dry-run", "--json", server=store_server,
              role="writer")
    assert dry.exit_code == 0 and json.loads(dry.stdout) == {"pairs": 3, "dry_run": True}
    done = run("labels", "retract", str(listing), "--json", server=store_server, role="writer")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"pairs": 3, "deleted": 2, "not_found": 1}
    with LabelStoreClient(store_server.url, token=store_server.tokens["reader"]) as reader:
        assert [lab.source for lab in reader.get_many(["pin:1", "pin:2"])["pin:2"]] == [other]
        assert "pin:1" not in reader.get_many(["pin:1"])
        after = reader.changes(0, limit=1).head
    assert after == head + 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"entity": "pin:2", "source": other.key}) + "\n"
                   + json.dumps({"entity": "not a key", "source": other.key}) + "\n"
                   + json.dumps({"entity": "pin:2"}) + "\n")
    refused = run("labels", "retract", str(bad), server=store_server, role="writer")
    assert refused.exit_code == 1
    assert "record 2" in refused.output and "record 3: missing source" in refused.output
    with LabelStoreClient(store_server.url, token=store_server.tokens["reader"]) as reader:
        assert reader.changes(0, limit=1).head == after  # nothing retracted
    both = run("labels", "retract", str(bad), "--where", "reason=spam", server=store_server)
    assert both.exit_code == 2
