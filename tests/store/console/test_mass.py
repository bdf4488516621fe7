"""Mass actions against a real store: select with counts, export, retract with dry run and resume."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from enforce_sdk.model.label import Label
from enforce_sdk.store.mass import LabelQuery, new_job
from enforce_sdk.store.server import ThreadedStoreServer
from tests.store.console.conftest import (
    ADMIN_TOKEN,
    READER_TOKEN,
    label,
    put_labels,
    sign_in,
)

MISFIRE = "spam_domain_model/automated/v3"
OTHER = "nsfw_model/automated/v1"


def _seed(server: ThreadedStoreServer) -> None:
    put_labels(server, *[label(f"pin:{100 + i}", MISFIRE, "block", "spam") for i in range(30)],
               *[label(f"pin:{100 + i}", OTHER, "limit", "porn") for i in range(5)],
               label("user:42", MISFIRE, "block", "spam"))  # held (trusted entity)


def _admin(server: ThreadedStoreServer, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, server.url + path, timeout=30,
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, **kw)


def test_select_counts_and_samples(console_store: ThreadedStoreServer) -> None:
    _seed(console_store)
    answer = httpx.post(f"{console_store.url}/v1/labels/select",
                        headers={"Authorization": f"Bearer {READER_TOKEN}"},
                        json={"where": {"system": "spam_domain_model", "reason": "spam"}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["total"] == 31
    assert body["by_status"] == {"active": 30, "pending": 1}
    assert body["by_source"] == {MISFIRE: 31}
    assert len(body["sample"]) == 20
    bad = httpx.post(f"{console_store.url}/v1/labels/select",
                     headers={"Authorization": f"Bearer {READER_TOKEN}"},
                     json={"where": {"enforcement": "nuke"}})
    assert bad.status_code == 400 and bad.json()["field"] == "enforcement"
    unknown = httpx.post(f"{console_store.url}/v1/labels/select",
                         headers={"Authorization": f"Bearer {READER_TOKEN}"},
                         json={"where": {"colour": "red"}})
    assert unknown.status_code == 400 and unknown.json()["field"] == "colour"


def test_export_is_jsonl_that_labels_import_reads(console_store: ThreadedStoreServer) -> None:
    _seed(console_store)
    answer = httpx.get(f"{console_store.url}/v1/labels/export",
                       headers={"Authorization": f"Bearer {READER_TOKEN}"},
                       params={"reason": "porn"})
    assert answer.status_code == 200
    lines = answer.text.splitlines()
    assert len(lines) == 5
    labels = [Label.from_dict(json.loads(line)) for line in lines]  # the import's own parser
    assert {lb.source.key for lb in labels} == {OTHER}
    assert sorted(lb.entity for lb in labels) == [f"pin:{100 + i}" for i in range(5)]


def test_console_dry_run_then_retract_as_a_job(console_store: ThreadedStoreServer) -> None:
    _seed(console_store)
    admin = sign_in(console_store, "ada")
    query = {"system": "spam_domain_model", "status": "active"}
    counted = admin.client.get("/console/mass", params=query).text
    assert 'id="total">30 matching labels' in counted
    export = admin.client.get("/console/mass/export", params=query)
    assert len(export.text.splitlines()) == 30
    no_reason = admin.post("/console/mass/retract", {**query, "step": "dry", "retract_reason": " "},
                           from_page="/console/mass")
    assert no_reason.status_code == 400 and "a reason is required" in no_reason.text
    dry = admin.post("/console/mass/retract", {**query, "step": "dry", "retract_reason": "model misfire"},
                     from_page="/console/mass")
    assert dry.status_code == 200 and "Dry run: this retracts 30 labels" in dry.text
    assert len(console_store.service.storage.scan_labels()) == 36  # nothing retracted yet
    # the matches change between the dry run and the confirmation: shown again, not run
    put_labels(console_store, label("pin:99", MISFIRE, "block", "spam"))
    stale = admin.post("/console/mass/retract", {**query, "step": "run", "expected": "30",
                                                 "retract_reason": "model misfire"},
                       from_page="/console/mass")
    assert stale.status_code == 200 and 'id="changed"' in stale.text
    assert "Dry run: this retracts 31 labels" in stale.text
    run = admin.post("/console/mass/retract", {**query, "step": "run", "expected": "31",
                                               "retract_reason": "model misfire"},
                     from_page="/console/mass")
    assert run.status_code == 303
    job_path = run.headers["location"]
    job_id = job_path.rsplit("/", 1)[1]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = admin.client.get(job_path).text
        if 'id="state">done' in page:
            break
        time.sleep(0.05)
    assert 'id="retracted">31<' in page
    left = console_store.service.storage.scan_labels()
    assert {s.label.source.key for s in left} == {MISFIRE, OTHER}  # OTHER, and the held one
    assert [s.label.entity for s in left if s.label.source.key == MISFIRE] == ["user:42"]
    (event, *_) = console_store.service.storage.history("pin:103", limit=1)
    assert (event.action.value, event.actor) == ("delete", f"console:ada job:{job_id}")


def test_a_viewer_or_reviewer_cannot_retract(console_store: ThreadedStoreServer) -> None:
    _seed(console_store)
    for name in ("vera", "rita"):
        session = sign_in(console_store, name)
        page = session.client.get("/console/mass", params={"reason": "spam"}).text
        assert 'id="retract"' not in page
        answer = session.post("/console/mass/retract", {"retract_reason": "x", "step": "run",
                                                        "system": "spam_domain_model"},
                              from_page="/console/mass")
        assert answer.status_code == 403
    assert len(console_store.service.storage.scan_labels()) == 36


def test_an_interrupted_job_resumes_from_its_cursor(console_store: ThreadedStoreServer) -> None:
    """A job that stopped after some chunks (here: saved as failed mid-way) finishes on resume,
    retracting only what is left."""
    _seed(console_store)
    storage = console_store.service.storage
    query = LabelQuery.parse({"reason": "spam", "status": "active"})
    matches = [s for s in storage.scan_labels() if query.matches(s)]
    assert len(matches) == 30
    # the first 12 were retracted by the job before it was interrupted
    from enforce_sdk.store.storage.base import DeleteOp

    job = new_job(query, "misfire", "console:ada", console_store.service.clock())
    storage.apply([DeleteOp(*s.label.key) for s in matches[:12]], actor=f"console:ada job:{job.id}",
                  now=console_store.service.clock())
    from dataclasses import replace

    storage.save_job(replace(job, state="failed", cursor=matches[11].label.key, matched=12,
                             retracted=12, error="the store stopped"))
    admin = sign_in(console_store, "ada")
    page = admin.client.get(f"/console/mass/jobs/{job.id}").text
    assert "the store stopped" in page and 'id="resume"' in page
    resumed = admin.post(f"/console/mass/jobs/{job.id}/resume", {},
                         from_page=f"/console/mass/jobs/{job.id}")
    assert resumed.status_code == 303
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and storage.job(job.id).state != "done":  # type: ignore[union-attr]
        time.sleep(0.05)
    done = storage.job(job.id)
    assert done is not None and (done.state, done.matched, done.retracted) == ("done", 30, 30)
    assert [s for s in storage.scan_labels() if query.matches(s)] == []


def test_api_retract_needs_admin_a_reason_and_a_query(console_store: ThreadedStoreServer) -> None:
    _seed(console_store)
    body = {"where": {"reason": "porn"}, "reason": "bad model run"}
    reader = httpx.post(f"{console_store.url}/v1/jobs/retract", json=body,
                        headers={"Authorization": f"Bearer {READER_TOKEN}"})
    assert reader.status_code == 403
    for bad, field in (({"where": {}, "reason": "x"}, "where"),
                       ({"where": {"reason": "porn"}}, "reason"),
                       ({"where": {"reason": "porn"}, "reason": "x", "dry_run": "yes"},
                        "dry_run")):
        answer = _admin(console_store, "POST", "/v1/jobs/retract", json=bad)
        assert (answer.status_code, answer.json()["field"]) == (400, field)
    dry = _admin(console_store, "POST", "/v1/jobs/retract", json={**body, "dry_run": True})
    assert dry.json()["total"] == 5 and dry.json()["dry_run"] is True
    assert len(console_store.service.storage.scan_labels()) == 36
    done = _admin(console_store, "POST", "/v1/jobs/retract", json=body).json()["job"]
    assert (done["state"], done["matched"], done["retracted"]) == ("done", 5, 5)
    assert _admin(console_store, "GET", f"/v1/jobs/{done['id']}").json()["job"] == done
    assert len(console_store.service.storage.scan_labels()) == 31
    again = _admin(console_store, "POST", f"/v1/jobs/{done['id']}/resume").json()["job"]
    assert again == done  # a finished job is not run again
