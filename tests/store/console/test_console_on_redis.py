"""The console on Redis Cluster: Lookup and the queue work; what needs console records says so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from enforce_sdk.store.server import start_in_thread
from enforce_sdk.store.storage.base import LabelStorage
from tests.store.console.conftest import (
    APPELLANT_TOKEN,
    label,
    policy_view,
    put_labels,
    sign_in,
    store_config,
)


def test_lookup_works_and_record_keeping_actions_name_the_backend(
        tmp_path: Path, redis_cluster_storage_factory: Callable[[], LabelStorage]) -> None:
    server = start_in_thread(store_config(tmp_path), storage=redis_cluster_storage_factory())
    server.service.live_policy.set(policy_view())
    try:
        put_labels(server, label("pin:5"), label("user:42", "bot_detector/automated/rt", "limit"))
        rita = sign_in(server, "rita")
        page = rita.client.get("/console/entity/pin:5")
        assert page.status_code == 200 and "pin:5 on search: block (hidden)" in page.text
        queue = rita.client.get("/console/queue").text
        assert 'data-entity="user:42"' in queue
        seq = next(s.seq for s in server.service.storage.labels_of("user:42"))
        refused = rita.post("/console/queue/decide", {
            "entity": "user:42", "source": "bot_detector/automated/rt", "seq": str(seq),
            "action": "reject", "note": "n"}, from_page="/console/queue")
        assert refused.status_code == 501 and "RedisClusterStorage" in refused.text
        assert len(server.service.storage.labels_of("user:42")) == 1  # nothing written
        appeal = httpx.post(f"{server.url}/v1/appeals", json={"entity": "pin:5",
                                                               "statement": "mine"},
                            headers={"Authorization": f"Bearer {APPELLANT_TOKEN}"})
        assert appeal.status_code == 501 and "SQLite" in appeal.json()["message"]
        mass = rita.client.get("/console/mass", params={"reason": "spam"})
        assert mass.status_code == 503 and "RedisClusterStorage" in mass.text
    finally:
        server.stop()
