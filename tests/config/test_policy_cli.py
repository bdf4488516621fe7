"""`config validate` with a reason registry and a label sample: unregistered reasons are warned
about (they keep serving); the dry run's per-rule figures, computed without ZooKeeper."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from enforce_sdk.cli._config import config
from enforce_sdk.config.document import EnforcementConfig
from enforce_sdk.config.dryrun import dry_run, read_label_export

REASONS = {"spam": {"tier": "medium", "description": "Unsolicited bulk content",
                    "owner": "spam-team"}}
RULE = {"name": "spam account", "when": "medium >= 2", "over": "reason = spam",
        "enforce": "block", "reason": "spam"}


def label(entity: str, system: str, reason: str = "spam") -> dict[str, Any]:
    return {"entity": entity, "source": {"system": system, "type": "automated", "name": "v1"},
            "enforcement": "limit", "reason": reason,
            "created_at": datetime.now(UTC).isoformat()}


def test_validate_warns_about_sampled_labels_with_unregistered_reasons(tmp_path: Path) -> None:
    doc = tmp_path / "sdk.json"
    doc.write_text(json.dumps({"version": 3, "reasons": REASONS,
                               "surfaces": {"home_feed": {}}}))
    sample = tmp_path / "labels.jsonl"
    sample.write_text("".join(json.dumps(r) + "\n" for r in (
        label("pin:1", "m"), label("pin:2", "m", "spamm"), label("pin:3", "m", "spamm"),
        label("pin:4", "m", "legacy"))))
    result = CliRunner().invoke(config, ["validate", str(doc), "--sample", str(sample)])
    assert result.exit_code == 0, result.output
    assert "OK: " in result.output
    assert ("warning: 3 of the sampled labels carry reasons not in the registry: legacy (1), "
            "spamm (2)") in result.output
    clean = tmp_path / "clean.jsonl"
    clean.write_text(json.dumps(label("pin:1", "m")) + "\n")
    ok = CliRunner().invoke(config, ["validate", str(doc), "--sample", str(clean)])
    assert "every reason of the 1 sampled entities is registered" in ok.output


def test_dry_run_counts_per_rule_against_the_old_config(tmp_path: Path) -> None:
    rows = [label("user:1", "a"), label("user:1", "b"), label("user:2", "a"),
            label("user:3", "a"), label("user:3", "b")]
    sample = read_label_export(iter(json.dumps(r) for r in rows))
    base = {"version": 1, "reasons": REASONS, "surfaces": {"s": {"hide_from": "limit"}}}
    old = EnforcementConfig.from_dict(base)
    new = EnforcementConfig.from_dict({**base, "version": 2, "escalate": [RULE]})
    now = datetime.now(UTC).timestamp() + 1
    report = dry_run(old, new, sample, now)
    (effect,) = report.rules
    assert (effect.surface, effect.rule, effect.status, effect.fires, effect.changes) == (
        "s", "spam account", "new", 2, 2)
    again = dry_run(new, new, sample, now)
    assert again.rules[0].status == "unchanged"
    changed = EnforcementConfig.from_dict(
        {**base, "version": 3, "escalate": [{**RULE, "enforce": "limit"}]})
    effect = dry_run(new, changed, sample, now).rules[0]
    assert (effect.status, effect.fires, effect.changes) == ("changed", 2, 0)  # limit: no more severe
