"""The `config` CLI group against a real ZooKeeper, driven with click's CliRunner."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import OPEN_ACL_UNSAFE, Permissions

from enforce_sdk._errors import ConfigConflictError, ConfigPermissionError
from enforce_sdk.cli import _config as cli_config
from enforce_sdk.cli._config import config
from enforce_sdk.config.zk_admin import ZooKeeperConfigStore
from enforce_sdk.config.zk_layout import ConfigLayout
from enforce_sdk.demo.sample import sample_labels
from tests.config.zk._helpers import ADMIN, ROOT, SDK, admin_client, document, write_around_the_cli

Invoke = Callable[..., Result]


@pytest.fixture
def invoke(zk_hosts: str) -> Invoke:
    """Run `config ...` with ZooKeeper named by the environment, as operators would."""
    runner = CliRunner()

    def run(*args: str, auth: str | None = ADMIN, env: dict[str, str] | None = None) -> Result:
        environ = {"ENFORCE_ZK_HOSTS": zk_hosts, "ENFORCE_ZK_PATH": ROOT}
        if auth is not None:
            environ["ENFORCE_ZK_AUTH"] = auth
        environ.update(env or {})
        return runner.invoke(config, list(args), env=environ, catch_exceptions=False)

    return run


def write(tmp_path: Path, name: str, doc: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return str(path)


@pytest.fixture
def sample_file(tmp_path: Path) -> str:
    """A JSONL export of 600 realistic labels, dated now."""
    path = tmp_path / "labels.jsonl"
    now = datetime.now(UTC)
    path.write_text("".join(json.dumps(lb.to_dict()) + "\n" for lb in sample_labels(600, now=now)))
    return str(path)


def test_validate(invoke: Invoke, tmp_path: Path) -> None:
    ok = invoke("validate", write(tmp_path, "ok.json", document(4)))
    assert ok.exit_code == 0, ok.output
    assert "version 4" in ok.output and "home_feed, search" in ok.output
    bad_doc = document(4)
    bad_doc["surfaces"]["search"]["fail_mode"] = "sideways"
    bad = invoke("validate", write(tmp_path, "bad.json", bad_doc))
    assert bad.exit_code == 1
    assert "surfaces.search.fail_mode" in bad.output
    broken = invoke("validate", write(tmp_path, "broken.json", "{"))
    assert broken.exit_code == 1 and "malformed JSON" in broken.output


def test_validate_push_and_diff_read_toml_by_its_suffix(invoke: Invoke, tmp_path: Path,
                                                        zk_hosts: str) -> None:
    toml = tmp_path / "new.toml"
    toml.write_text('version = 4\n[surfaces.home_feed]\nhide_from = "limit"\n'
                    '[surfaces.search]\nfail_mode = "closed"\n')
    ok = invoke("validate", str(toml))
    assert ok.exit_code == 0, ok.output
    assert "version 4" in ok.output and "home_feed, search" in ok.output
    pushed = invoke("push", str(toml), "-m", "from TOML")
    assert pushed.exit_code == 0 and "pushed version 4" in pushed.output, pushed.output
    got = invoke("get", auth=None)
    assert json.loads(got.output) == {"version": 4, "surfaces": {
        "home_feed": {"hide_from": "limit"}, "search": {"fail_mode": "closed"}}}
    same = invoke("diff", str(toml))
    assert same.exit_code == 0 and "no differences" in same.output, same.output


def test_json_answers_of_validate_push_rollback_and_diff(invoke: Invoke, tmp_path: Path,
                                                         zk_hosts: str) -> None:
    valid = invoke("validate", write(tmp_path, "v1.json", document(1)), "--json")
    assert valid.exit_code == 0, valid.output
    assert json.loads(valid.stdout) == {"file": str(tmp_path / "v1.json"), "valid": True,
                                        "version": 1, "surfaces": ["home_feed", "search"],
                                        "bytes": json.loads(valid.stdout)["bytes"]}
    first = invoke("push", str(tmp_path / "v1.json"), "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["pushed"] == 1
    second = invoke("push", write(tmp_path, "v2.json", document(2, home_feed="limit")),
                    "--force", "--json")
    assert second.exit_code == 0, second.output
    answer = json.loads(second.stdout)
    assert (answer["pushed"], answer["previous"]) == (2, 1)
    diff = invoke("diff", "1", "2", "--json", auth=None)
    assert diff.exit_code == 0, diff.output
    changed = json.loads(diff.stdout)
    assert changed["changed"] and '"limit"' in changed["diff"]
    back = invoke("rollback", "1", "--force", "--json")
    assert back.exit_code == 0, back.output
    assert json.loads(back.stdout) == {"pushed": 3, "rollback_of": 1,
                                                         "previous": 2}
    broken = tmp_path / "broken.toml"
    broken.write_text('version = 1\n[surfaces.home_feed\n')
    refused = invoke("validate", str(broken))
    assert refused.exit_code == 1 and "malformed TOML" in refused.output
    assert "line 2" in refused.output


def test_push_get_history(invoke: Invoke, tmp_path: Path, zk_hosts: str) -> None:
    first = invoke("push", write(tmp_path, "v.json", document(1)), "-m", "initial")
    assert first.exit_code == 0, first.output
    assert "pushed version 1" in first.output
    got = invoke("get", auth=None)  # reading needs no credential (world-readable by default)
    assert got.exit_code == 0, got.output
    assert json.loads(got.output) == document(1)

    # a second push of a file still saying version 1 becomes version 2
    second = invoke("push", write(tmp_path, "v2.json", document(1)), "--force", "-m", "again")
    assert second.exit_code == 0, second.output
    assert "pushed version 2" in second.output and "was 1" in second.output
    hist = invoke("history", "--json")
    rows = [json.loads(line) for line in hist.output.splitlines()]
    assert [(r["version"], r["comment"], r["current"]) for r in rows] == [
        (2, "again", True), (1, "initial", False)]
    assert rows[0]["pushed_by"].startswith("config-admin")
    old = invoke("get", "--version", "1")
    assert json.loads(old.output)["version"] == 1


def test_push_refuses_invalid_and_oversized_documents(invoke: Invoke, tmp_path: Path,
                                                      zk_hosts: str) -> None:
    bad_doc = document(1)
    bad_doc["surfaces"]["home_feed"]["selector"] = "type = = human"
    bad = invoke("push", write(tmp_path, "bad.json", bad_doc), "--force")
    assert bad.exit_code == 1 and "surfaces.home_feed.selector" in bad.output
    big = document(1)
    big["surfaces"]["home_feed"]["weights"] = {f"system_{i:06d}": 1.0 for i in range(20000)}
    huge = invoke("push", write(tmp_path, "big.json", big), "--force")
    assert huge.exit_code == 1 and "limit" in huge.output
    zk = KazooClient(hosts=zk_hosts)
    zk.start()
    try:  # nothing was written half-way
        assert zk.exists(ROOT) is None
    finally:
        zk.stop()


def test_guardrail_refuses_a_big_move_unless_forced(invoke: Invoke, tmp_path: Path,
                                                    sample_file: str) -> None:
    assert invoke("push", write(tmp_path, "v1.json", document(1))).exit_code == 0
    # a small change (cache ttl) passes the guardrail
    small = document(1)
    small["cache"]["ttl"] = "90s"
    ok = invoke("push", write(tmp_path, "small.json", small), "--sample", sample_file)
    assert ok.exit_code == 0, ok.output
    assert "dry run over" in ok.output and "+0.00%" in ok.output
    # hiding `limit` labels too on home_feed moves its hidden share a lot
    wide = write(tmp_path, "wide.json", document(1, home_feed="limit"))
    refused = invoke("push", wide, "--sample", sample_file)
    assert refused.exit_code == 1, refused.output
    assert "guardrail refused" in refused.output and "home_feed" in refused.output
    assert json.loads(invoke("get").output)["version"] == 2  # unchanged
    # a generous threshold, or --force, lets it through
    forced = invoke("push", wide, "--sample", sample_file, "--force")
    assert forced.exit_code == 0, forced.output
    assert json.loads(invoke("get").output)["surfaces"]["home_feed"]["hide_from"] == "limit"


def test_guardrail_threshold_is_configurable(invoke: Invoke, tmp_path: Path,
                                             sample_file: str) -> None:
    assert invoke("push", write(tmp_path, "v1.json", document(1))).exit_code == 0
    wide = write(tmp_path, "wide.json", document(1, home_feed="limit"))
    ok = invoke("push", wide, "--sample", sample_file, "--max-shift", "0.9")
    assert ok.exit_code == 0, ok.output
    back = write(tmp_path, "back.json", document(1))
    refused = invoke("push", back, "--sample", sample_file,
                     env={"ENFORCE_CONFIG_MAX_SHIFT": "0.001"})
    assert refused.exit_code == 1 and "guardrail refused" in refused.output


def test_push_over_existing_config_needs_a_sample_or_force(invoke: Invoke,
                                                           tmp_path: Path) -> None:
    assert invoke("push", write(tmp_path, "v1.json", document(1))).exit_code == 0
    res = invoke("push", write(tmp_path, "v2.json", document(2)))
    assert res.exit_code == 2 and "--sample" in res.output


def test_concurrent_pushes_do_not_overwrite_each_other(zk_hosts: str) -> None:
    with ZooKeeperConfigStore(zk_hosts, ROOT, auth=ADMIN) as store:
        store.push(document(1), expected=None)
    barrier = threading.Barrier(4, timeout=30)
    outcomes: list[object] = []

    def operator(i: int) -> None:
        with ZooKeeperConfigStore(zk_hosts, ROOT, auth=ADMIN) as store:
            current = store.current()
            barrier.wait()
            try:
                outcomes.append(store.push(document(1, home_feed="limit"), expected=current,
                                           comment=f"operator {i}").version)
            except ConfigConflictError as exc:
                outcomes.append(exc)

    threads = [threading.Thread(target=operator, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    wins = [o for o in outcomes if isinstance(o, int)]
    losses = [o for o in outcomes if isinstance(o, ConfigConflictError)]
    assert wins == [2] and len(losses) == 3
    assert "changed since it was read" in str(losses[0])
    with ZooKeeperConfigStore(zk_hosts, ROOT) as store:
        assert store.history_versions() == [1, 2]
        assert store.current() is not None


def test_cli_push_loses_cleanly_to_a_concurrent_push(
    invoke: Invoke, tmp_path: Path, zk_hosts: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert invoke("push", write(tmp_path, "v1.json", document(1))).exit_code == 0
    guardrail = cli_config._guardrail

    def racing_guardrail(*args: Any, **kwargs: Any) -> None:
        guardrail(*args, **kwargs)
        with ZooKeeperConfigStore(zk_hosts, ROOT, auth=ADMIN) as other:  # another operator
            other.push(document(1, search="remove"), expected=other.current(), comment="them")

    monkeypatch.setattr(cli_config, "_guardrail", racing_guardrail)
    res = invoke("push", write(tmp_path, "mine.json", document(1, home_feed="limit")), "--force")
    assert res.exit_code == 1, res.output
    assert "changed since it was read" in res.output and "version 2" in res.output
    current = json.loads(invoke("get").output)
    assert current["surfaces"]["search"]["hide_from"] == "remove"  # theirs survived
    assert current["surfaces"]["home_feed"]["hide_from"] == "block"


def test_rollback_repushes_an_old_document_as_a_new_version(invoke: Invoke, tmp_path: Path
                                                            ) -> None:
    assert invoke("push", write(tmp_path, "v1.json", document(1))).exit_code == 0
    assert invoke("push", write(tmp_path, "v2.json", document(2, search="limit")),
                  "--force").exit_code == 0
    res = invoke("rollback", "1")
    assert res.exit_code == 0, res.output
    assert "as version 3" in res.output
    now = json.loads(invoke("get").output)
    assert now == {**document(1), "version": 3}
    rows = [json.loads(x) for x in invoke("history", "--json").output.splitlines()]
    assert rows[0]["kind"] == "rollback" and rows[0]["rollback_of"] == 1
    missing = invoke("rollback", "17")
    assert missing.exit_code == 2 and "not in the history" in missing.output


def test_rollback_replaces_a_bad_document_written_around_the_cli(
    invoke: Invoke, tmp_path: Path, zk_hosts: str
) -> None:
    assert invoke("push", write(tmp_path, "v1.json", document(1))).exit_code == 0
    write_around_the_cli(zk_hosts, b"garbage")
    got = invoke("get")
    assert got.exit_code == 1 and "invalid" in got.output
    res = invoke("rollback", "1")
    assert res.exit_code == 0, res.output
    assert json.loads(invoke("get").output)["version"] == 2


def test_diff(invoke: Invoke, tmp_path: Path) -> None:
    assert invoke("push", write(tmp_path, "v1.json", document(1))).exit_code == 0
    assert invoke("push", write(tmp_path, "v2.json", document(2, search="remove")),
                  "--force").exit_code == 0
    two = invoke("diff", "1", "2")
    assert two.exit_code == 0
    assert '-      "hide_from": "block"' in two.output and '+      "hide_from": "remove"' in two.output
    f = write(tmp_path, "f.json", document(2, search="remove"))
    same = invoke("diff", f)
    assert same.output.strip() == "no differences"
    g = write(tmp_path, "g.json", document(2, home_feed="limit", search="remove"))
    changed = invoke("diff", g)
    assert '+      "hide_from": "limit"' in changed.output


def test_only_the_config_admin_can_write(invoke: Invoke, tmp_path: Path, zk_hosts: str) -> None:
    assert invoke("push", write(tmp_path, "v1.json", document(1))).exit_code == 0
    layout = ConfigLayout(ROOT)
    for auth_data in ([("digest", SDK)], []):  # an SDK identity, and world
        zk = KazooClient(hosts=zk_hosts, auth_data=auth_data)
        zk.start()
        try:
            assert zk.get(layout.config)[0]  # may read
            with pytest.raises(NoAuthError):
                zk.set(layout.config, b'{"version": 99}')
            with pytest.raises(NoAuthError):
                zk.delete(layout.config)
            with pytest.raises(NoAuthError):
                zk.create(layout.history_node(99), b"{}")
            with pytest.raises(NoAuthError):
                zk.set_acls(layout.config, OPEN_ACL_UNSAFE)
        finally:
            zk.stop()
    with ZooKeeperConfigStore(zk_hosts, ROOT, auth=SDK) as store, \
            pytest.raises(ConfigPermissionError, match="refused"):
        store.push(document(2), expected=store.current())
    res = invoke("push", write(tmp_path, "v2.json", document(2)), "--force", auth=SDK)
    assert res.exit_code == 2 and "refused" in res.output
    nocred = invoke("push", write(tmp_path, "v2.json", document(2)), "--force", auth=None)
    assert nocred.exit_code == 2 and "ENFORCE_ZK_AUTH" in nocred.output


def test_named_readers_replace_world_read(invoke: Invoke, tmp_path: Path, zk_hosts: str) -> None:
    res = invoke("push", write(tmp_path, "v1.json", document(1)), "--reader", SDK)
    assert res.exit_code == 0, res.output
    layout = ConfigLayout(ROOT)
    world = KazooClient(hosts=zk_hosts)
    world.start()
    try:
        with pytest.raises(NoAuthError):
            world.get(layout.config)
    finally:
        world.stop()
    denied = invoke("get", auth=None)
    assert denied.exit_code == 2 and "refused" in denied.output
    assert json.loads(invoke("get", auth=SDK).output)["version"] == 1


def test_unreachable_zookeeper_is_a_clear_error(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(config, ["get", "--hosts", "127.0.0.1:1", "--zk-timeout", "0.5"])
    assert res.exit_code == 2
    assert "ZooKeeper" in res.output and "127.0.0.1:1" in res.output


def test_sample_file_errors_name_the_line(invoke: Invoke, tmp_path: Path) -> None:
    assert invoke("push", write(tmp_path, "v1.json", document(1))).exit_code == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"entity": "pin:1"}\n')
    res = invoke("push", write(tmp_path, "v2.json", document(2)), "--sample", str(bad))
    assert res.exit_code == 2 and "line 1" in res.output


OTHER_READER = "other-reader:other-secret"


def test_named_readers_stay_on_every_later_node(invoke: Invoke, tmp_path: Path,
                                                zk_hosts: str) -> None:
    """Later pushes and rollbacks without --reader keep the namespace's readers."""
    assert invoke("push", write(tmp_path, "v1.json", document(1)), "--reader", SDK
                  ).exit_code == 0
    res = invoke("push", write(tmp_path, "v2.json", document(2, search="limit")), "--force")
    assert res.exit_code == 0, res.output
    res = invoke("rollback", "1")
    assert res.exit_code == 0, res.output
    # a --reader that does not match the namespace's readers is refused, nothing written
    for readers in (["--reader", OTHER_READER], ["--reader", SDK, "--reader", OTHER_READER]):
        res = invoke("push", write(tmp_path, "v4.json", document(4)), "--force", *readers)
        assert res.exit_code == 2, res.output
        assert "does not match the readers" in res.output and "other-reader" in res.output
    res = invoke("push", write(tmp_path, "v4.json", document(4)), "--force",
                 env={"ENFORCE_ZK_READERS": OTHER_READER})
    assert res.exit_code == 2 and "does not match" in res.output
    res = invoke("push", write(tmp_path, "v4.json", document(4)), "--force", "--reader", SDK)
    assert res.exit_code == 0, res.output  # the same readers are fine

    layout = ConfigLayout(ROOT)
    admin = admin_client(zk_hosts)
    world = KazooClient(hosts=zk_hosts)
    world.start()
    try:
        root_acl, _ = admin.get_acls(layout.root)
        nodes = [layout.root, layout.config, layout.history] + [
            f"{layout.history}/{name}" for name in admin.get_children(layout.history)]
        assert len(nodes) == 3 + 4  # versions 1..4
        for node in nodes:
            assert admin.get_acls(node)[0] == root_acl, node
            with pytest.raises(NoAuthError):
                world.get(node)
        assert sorted(a.id.id.split(":")[0] for a in root_acl) == ["config-admin", "sdk-host"]
    finally:
        world.stop()
        admin.stop()
    assert invoke("get", "--version", "2", auth=SDK).exit_code == 0


def test_world_readable_namespace_refuses_named_readers_later(invoke: Invoke,
                                                              tmp_path: Path) -> None:
    assert invoke("push", write(tmp_path, "v1.json", document(1))).exit_code == 0
    res = invoke("push", write(tmp_path, "v2.json", document(2)), "--force", "--reader", SDK)
    assert res.exit_code == 2 and "world:anyone" in res.output
    assert json.loads(invoke("get", auth=None).output)["version"] == 1


def test_another_admin_can_create_a_namespace_next_to_ours(zk_hosts: str) -> None:
    with ZooKeeperConfigStore(zk_hosts, ROOT, auth=ADMIN) as store:
        store.push(document(1), expected=None)
    other_root = ROOT.rsplit("/", 1)[0] + "/team_b"
    with ZooKeeperConfigStore(zk_hosts, other_root, auth="team-b-admin:b-secret") as store:
        assert store.push(document(1), expected=None).version == 1
    zk = admin_client(zk_hosts)
    try:
        parent_acl, _ = zk.get_acls(ROOT.rsplit("/", 1)[0])
        assert parent_acl == OPEN_ACL_UNSAFE  # ancestors keep ZooKeeper's default ACL
        ours, _ = zk.get_acls(ROOT)
        assert [a.perms for a in ours] == [Permissions.ALL, Permissions.READ]
    finally:
        zk.stop()


def test_push_refuses_a_namespace_root_others_can_write(invoke: Invoke, tmp_path: Path,
                                                        zk_hosts: str) -> None:
    zk = KazooClient(hosts=zk_hosts)
    zk.start()
    try:
        zk.ensure_path(ROOT)  # e.g. created by hand with the default (open) ACL
    finally:
        zk.stop()
    res = invoke("push", write(tmp_path, "v1.json", document(1)))
    assert res.exit_code == 2, res.output
    assert "world:anyone do more than read" in res.output
    with ZooKeeperConfigStore(zk_hosts, ROOT) as store:
        assert store.current() is None


def test_guardrail_after_a_bad_write_compares_with_the_newest_valid_version(
    invoke: Invoke, tmp_path: Path, zk_hosts: str, sample_file: str
) -> None:
    assert invoke("push", write(tmp_path, "v1.json", document(1))).exit_code == 0
    write_around_the_cli(zk_hosts, b"garbage")
    wide = write(tmp_path, "wide.json", document(1, home_feed="limit"))
    refused = invoke("push", wide, "--sample", sample_file)
    assert refused.exit_code == 1, refused.output
    assert "history version 1" in refused.output and "guardrail refused" in refused.output
    nosample = invoke("push", wide)
    assert nosample.exit_code == 2 and "--sample" in nosample.output
    guarded_rollback = invoke("rollback", "1", "--sample", sample_file,
                              "--max-shift", "0.0")  # same document: no shift, passes
    assert guarded_rollback.exit_code == 0, guarded_rollback.output
    assert "history version 1" in guarded_rollback.output


def test_guardrail_with_nothing_valid_to_compare_needs_force(
    invoke: Invoke, tmp_path: Path, zk_hosts: str, sample_file: str
) -> None:
    zk = admin_client(zk_hosts)
    try:
        with ZooKeeperConfigStore(zk_hosts, ROOT, auth=ADMIN) as store:
            store.ensure_layout()
        zk.create(ConfigLayout(ROOT).config, b"garbage")
    finally:
        zk.stop()
    res = invoke("push", write(tmp_path, "v1.json", document(1)), "--sample", sample_file)
    assert res.exit_code == 1 and "no valid version" in res.output, res.output
    forced = invoke("push", write(tmp_path, "v1.json", document(1)), "--force")
    assert forced.exit_code == 0, forced.output


def test_push_dry_run_reports_each_new_rule_and_pushes_nothing(
        invoke: Invoke, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    rows = []
    for i in range(10):  # 10 users with 2 spam labels from two systems, 10 with one
        for system in ("a_model", "b_model") if i < 5 else ("a_model",):
            rows.append({"entity": f"user:{i}", "source": {"system": system,
                         "type": "automated", "name": "v1"}, "enforcement": "limit",
                         "reason": "spam", "created_at": now.isoformat()})
    sample = tmp_path / "spam.jsonl"
    sample.write_text("".join(json.dumps(r) + "\n" for r in rows))
    reasons = {"spam": {"tier": "medium", "description": "spam", "owner": "spam-team"}}
    v1 = {**document(1), "reasons": reasons}
    assert invoke("push", write(tmp_path, "v1.json", v1)).exit_code == 0
    rule = {"name": "spam account",
            "when": "high >= 1 or medium >= 2 or (low >= 2 and medium >= 1)",
            "over": "reason = spam and age < 365d", "enforce": "block", "reason": "spam"}
    v2 = {**v1, "escalate": [rule]}
    out = invoke("push", write(tmp_path, "v2.json", v2), "--sample", str(sample), "--dry-run",
                 "--max-shift", "1")
    assert out.exit_code == 0, out.output
    for surface in ("home_feed", "search"):  # limit -> block for the 5 with two sources
        assert f"{surface}: rule 'spam account' (new) fires on 5, changes 5 sampled entities" \
            in out.output
    assert "dry run: nothing pushed" in out.output
    assert "escalate" not in json.loads(invoke("get").output)
