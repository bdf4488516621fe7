"""OpenTelemetry (the [otel] extra): the SDK's store read is the parent of the store's
handling, which is the parent of its storage calls; without opentelemetry nothing is made.
Each case runs in a fresh interpreter (a tracer provider is set once per process)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TRACED = textwrap.dedent("""
    import json, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    from enforce_sdk.store import StoreConfig
    from enforce_sdk.store.server import start_in_thread
    from enforce_sdk.store_client.client import LabelStoreClient

    config = StoreConfig.from_dict({
        "storage": {"url": "sqlite:///" + sys.argv[1]},
        "tokens": [{"name": "r", "role": "reader", "token": "reader-token"}]})
    with start_in_thread(config) as server:
        with trace.get_tracer("host").start_as_current_span("feed request"):
            with LabelStoreClient(server.url, token="reader-token") as client:
                client.get_many(["pin:1", "pin:2"])
    spans = [{"name": s.name, "id": s.context.span_id, "trace": s.context.trace_id,
              "parent": s.parent.span_id if s.parent else None, "kind": s.kind.name,
              "attributes": dict(s.attributes or {})}
             for s in exporter.get_finished_spans()]
    print(json.dumps(spans))
""")

ABSENT = textwrap.dedent("""
    import sys
    sys.modules["opentelemetry"] = None  # as if the [otel] extra were not installed
    from enforce_sdk import _tracing
    headers = {}
    assert not _tracing.enabled()
    assert _tracing.client_span("x", headers) is _tracing.server_span("y", {}) is _tracing.span("z")
    with _tracing.client_span("x", headers) as made:
        assert made is None
    assert headers == {}
    print("ok")
""")


def run(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_sdk_span_is_the_parent_of_the_store_span(tmp_path: Path) -> None:
    spans = json.loads(run(TRACED, str(tmp_path / "labels.db")).strip().splitlines()[-1])
    by_name = {s["name"]: s for s in spans}
    host = by_name["feed request"]
    sdk = by_name["enforce_sdk store POST /v1/labels"]
    store = by_name["enforce_store POST /v1/labels/query"]
    bodies = by_name["enforce_store storage.get_bodies"]
    assert (sdk["kind"], store["kind"]) == ("CLIENT", "SERVER")
    assert sdk["parent"] == host["id"]
    assert store["parent"] == sdk["id"]  # across HTTP, by traceparent
    assert bodies["parent"] == store["id"]
    assert len({s["trace"] for s in (host, sdk, store, bodies)}) == 1
    assert store["attributes"]["http.response.status_code"] == 200
    assert store["attributes"]["enforce.request_id"]


def test_without_opentelemetry_nothing_is_made() -> None:
    assert run(ABSENT).strip() == "ok"
