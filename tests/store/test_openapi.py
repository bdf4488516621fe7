"""The API document (store/openapi.py) stays true: its operations are exactly the app's
routes (outside the console), it is served at /openapi.json without a token, it is a
valid OpenAPI 3.1 document, and docs/openapi.json is its current copy.

Regenerate the copy with:
    python -c "import json; from enforce_sdk.store.openapi import document; \
print(json.dumps(document(), indent=2))" > docs/openapi.json
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from enforce_sdk.store import SQLiteStorage, StoreConfig
from enforce_sdk.store.app import create_app
from enforce_sdk.store.openapi import document

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"get", "post", "put", "delete", "patch"}


def _app(tmp_path: Path) -> Starlette:
    data = {"tokens": [{"name": "r", "role": "reader", "token": "reader-token"}]}
    return create_app(StoreConfig.from_dict(data), SQLiteStorage(tmp_path / "labels.db"))


def served_operations(app: Starlette) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, Mount):
            assert route.path.startswith("/console"), route.path  # the only mount
            continue
        assert isinstance(route, Route), route
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # {entity:path} -> {entity}
        for method in route.methods or ():
            if method != "HEAD":  # Starlette adds HEAD to every GET
                found.add((method.lower(), path))
    return found


def documented_operations() -> set[tuple[str, str]]:
    return {(m, p) for p, item in document()["paths"].items() for m in item if m in METHODS}


def test_the_document_lists_exactly_the_routes_the_app_serves(tmp_path: Path) -> None:
    served = served_operations(_app(tmp_path))
    assert ("get", "/v1/labels/{entity}") in served  # the normalisation works
    assert served == documented_operations()


def test_with_the_console_on_only_the_console_is_left_out(tmp_path: Path) -> None:
    from tests.store.console.conftest import store_config

    app = create_app(store_config(tmp_path), SQLiteStorage(tmp_path / "labels.db"))
    assert any(isinstance(r, Mount) for r in app.routes)  # the console is mounted
    assert served_operations(app) == documented_operations()


def test_every_operation_names_its_role_and_errors() -> None:
    doc = document()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            role = op["x-required-role"]
            assert role in {"none", "appellant", "reader", "writer", "admin"}, (method, path)
            assert (op["security"] == []) == (role == "none"), (method, path)
            if role != "none":
                assert "401" in op["responses"] and "403" in op["responses"], (method, path)
            for param in op.get("parameters", ()):
                if param["in"] == "path":
                    assert "{" + param["name"] + "}" in path


def test_the_document_is_valid_openapi_3_1() -> None:
    schemathesis = pytest.importorskip("schemathesis")
    schema = schemathesis.openapi.from_dict(document())
    assert len(list(schema.get_all_operations())) == len(documented_operations())
    from jsonschema import Draft202012Validator

    for name, sub in document()["components"]["schemas"].items():
        Draft202012Validator.check_schema(sub), name


def test_it_is_served_without_a_token(tmp_path: Path) -> None:
    with TestClient(_app(tmp_path)) as client:
        answer = client.get("/openapi.json")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json() == document()
        assert client.get("/v1/pending").status_code == 401  # the rest still needs one


def test_the_published_copy_is_current() -> None:
    published = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert published == document(), "regenerate docs/openapi.json (see this module's doc)"
