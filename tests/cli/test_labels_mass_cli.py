"""`enforce-sdk labels export` and `labels retract --where` against a real Label Store."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from enforce_sdk.cli import main
from enforce_sdk.store_client.client import LabelStoreClient
from tests.fixtures.store_server import StoreServerProcess
from tests.store.console.conftest import label


def invoke(server: StoreServerProcess, *args: str, role: str = "admin",
           stdin: str | None = None) -> Result:
    env = {"ENFORCE_STORE_URL": server.url, "ENFORCE_STORE_TOKEN": server.tokens[role]}
    return CliRunner().invoke(main, list(args), env=env, input=stdin, catch_exceptions=False)


def _seed(server: StoreServerProcess) -> None:
    from enforce_sdk.model.label import Label

    with LabelStoreClient(server.url, token=server.tokens["writer"]) as client:
        client.put([Label.from_dict(label(f"pin:{i}", "spam_model/automated/run7", "block",
                                          "spam")) for i in range(12)]
                   + [Label.from_dict(label(f"pin:{i}", "review_tool/human/rev-1", "limit",
                                            "porn")) for i in range(3)])


def test_export_then_import_round_trips(store_server: StoreServerProcess, tmp_path: Path
                                        ) -> None:
    _seed(store_server)
    out = tmp_path / "spam.jsonl"
    result = invoke(store_server, "labels", "export", "--where", "system=spam_model",
                    "-o", str(out), role="reader")
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert len(lines) == 12 and "exported 12 labels" in result.output
    assert {json.loads(line)["source"]["name"] for line in lines} == {"run7"}
    # what export wrote, import reads: identical labels are no-ops
    again = invoke(store_server, "labels", "import", str(out), "--no-checkpoint", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["noop"] == 12


def test_bad_where_is_a_usage_error(store_server: StoreServerProcess) -> None:
    bad = invoke(store_server, "labels", "export", "--where", "colour=red")
    assert bad.exit_code == 2 and "FIELD one of" in bad.output
    refused = invoke(store_server, "labels", "export", "--where", "enforcement=nuke")
    assert refused.exit_code == 1 and "enforcement" in refused.output


def test_retract_dry_run_confirm_and_job(store_server: StoreServerProcess) -> None:
    _seed(store_server)
    dry = invoke(store_server, "labels", "retract", "--where", "name=run7", "--reason",
                 "run 7 misfired", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "12 labels match" in dry.output and "spam_model/automated/run7=12" in dry.output
    declined = invoke(store_server, "labels", "retract", "--where", "name=run7", "--reason",
                      "run 7 misfired", stdin="n\n")
    assert declined.exit_code == 2 and "nothing retracted" in declined.output
    with LabelStoreClient(store_server.url, token=store_server.tokens["reader"]) as client:
        assert len(client.get("pin:0").labels) == 2
    done = invoke(store_server, "labels", "retract", "--where", "name=run7", "--where",
                  "reason=spam", "--reason", "run 7 misfired", "--yes")
    assert done.exit_code == 0, done.output
    assert "12 retracted of 12 matched" in done.output
    job_id = done.output.split("job ")[1].split(":")[0]
    with LabelStoreClient(store_server.url, token=store_server.tokens["reader"]) as client:
        assert [lb.source.name for lb in client.get("pin:0").labels] == ["rev-1"]
        events = client.history("pin:0", limit=1).events
    assert events[0].actor == f"test-admin job:{job_id}"
    resumed = invoke(store_server, "labels", "retract", "--resume", job_id)
    assert resumed.exit_code == 0 and "12 retracted" in resumed.output


def test_retract_needs_an_admin_and_a_reason(store_server: StoreServerProcess) -> None:
    _seed(store_server)
    no_reason = invoke(store_server, "labels", "retract", "--where", "name=run7")
    assert no_reason.exit_code == 2 and "--reason is required" in no_reason.output
    writer = invoke(store_server, "labels", "retract", "--where", "name=run7", "--reason", "x",
                    "--yes", role="writer")
    assert writer.exit_code == 2 and "403" in writer.output
