"""The store's API contract: an OpenAPI 3.1 document of `/v1` and the probes, as data.

One source of truth: `GET /openapi.json` serves `document()`, docs/openapi.json is a
copy (tests keep it equal, and keep the document's operations equal to the app's
routes). Schemas use the JSON Schema 2020-12 dialect. Answers name the keys that are
always present as `required` and allow more (`additionalProperties`), since answers
may grow; request bodies name every field the store accepts (it refuses unknown
ones). Each operation's `x-required-role` is the least token role it needs
(`appellant` < `reader` < `writer` < `admin`; `none`: no token).
"""

from __future__ import annotations

import copy
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SCHEMA_VERSION = 1  # the "schema" every body carries
JSON = "application/json"
MSGPACK = "application/msgpack"

_REF = "#/components/schemas/"
_RESP = "#/components/responses/"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF + name}


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None, *,
         closed: bool = False) -> dict[str, Any]:
    props = {"schema": {"const": SCHEMA_VERSION}, **required, **(optional or {})}
    schema: dict[str, Any] = {"type": "object", "properties": props,
                              "required": sorted(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


_STR = {"type": "string"}
_INT = {"type": "integer"}
_SEQ = {"type": "integer", "minimum": 0}
_NULL_STR = {"type": ["string", "null"]}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Every error answer (any status): a stable machine code, human text "
                       "and, where known, the offending field and batch position; some "
                       "codes add keys (too_old: oldest, head; unknown_reason: suggestions).",
        "properties": {
            "schema": {"const": SCHEMA_VERSION},
            "error": _STR, "message": _STR, "field": _STR,
            "index": {"type": "integer", "minimum": 0},
        },
        "required": ["schema", "error", "message"],
    },
    "Source": {
        "type": "object",
        "properties": {"system": _STR, "type": {"enum": ["human", "automated"]}, "name": _STR},
        "required": ["system", "type", "name"],
    },
    "Label": {
        "type": "object",
        "description": "A label in its JSON wire form (docs/label-schema.md).",
        "properties": {
            "entity": _STR, "source": _ref("Source"),
            "enforcement": {"enum": ["allow", "limit", "block", "remove"]},
            "reason": _STR, "created_at": {"type": "string", "format": "date-time"},
            "expires_at": {"type": "string", "format": "date-time"},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "metadata": {"type": "object"},
        },
        "required": ["entity", "source", "enforcement", "reason", "created_at"],
    },
    "WriteResult": {
        "type": "object",
        "properties": {"entity": _STR, "source": _STR,
                       "outcome": {"enum": ["written", "pending", "noop", "deleted",
                                            "not_found"]}},
        "required": ["entity", "source", "outcome"],
    },
    "Appeal": {
        "type": "object",
        "properties": {
            "id": _INT, "entity": _STR, "labels": {"type": "array", "items": _STR},
            "appellant": _STR, "statement": _STR, "ref": _NULL_STR,
            "state": {"enum": ["open", "upheld", "denied"]}, "opened_at": _STR,
            "decided_by": _NULL_STR, "decided_at": _NULL_STR, "decision_note": _NULL_STR,
        },
        "required": ["id", "entity", "labels", "appellant", "statement", "state", "opened_at"],
    },
    "Job": {
        "type": "object",
        "properties": {"id": _STR, "actor": _STR, "query": _STR, "reason": _STR,
                       "state": _STR, "matched": _INT, "retracted": _INT,
                       "cursor": _NULL_STR, "created_at": _STR, "updated_at": _STR,
                       "error": _NULL_STR},
        "required": ["id", "state"],
    },
    "Where": {
        "type": "object",
        "description": "A label query: every given field must hold.",
        "properties": {
            "system": _STR, "type": {"enum": ["human", "automated"]}, "name": _STR,
            "reason": _STR, "enforcement": {"enum": ["allow", "limit", "block", "remove"]},
            "status": {"enum": ["active", "pending"]},
            "created_after": {"type": "string", "format": "date-time"},
            "created_before": {"type": "string", "format": "date-time"},
        },
        "additionalProperties": False,
    },
    "Selection": _obj({
        "total": {"type": "integer", "minimum": 0}, "by_source": _COUNTS,
        "by_reason": _COUNTS, "by_enforcement": _COUNTS, "by_status": _COUNTS,
        "sample": {"type": "array", "items": {"type": "object"}},
    }),
}

# Error statuses every authenticated operation may answer, and those of bodies.
_AUTH = ("401", "403", "503")
_BODY = ("400", "413", "415")


def _answer(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description,
            "content": {JSON: {"schema": schema}, MSGPACK: {"schema": schema}}}


def _op(summary: str, role: str, ok: dict[str, Any], *, errors: tuple[str, ...] = (),
        body: dict[str, Any] | None = None, params: list[dict[str, Any]] | None = None,
        status: str = "200", only: tuple[str, ...] = (),
        extra: dict[str, Any] | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {status: ok, **(extra or {})}
    statuses = (*(_AUTH if role != "none" else ()), *(_BODY if body else ()), *errors)
    for code in sorted(set(statuses)):
        responses[code] = {"$ref": _RESP + "Problem"}
    op: dict[str, Any] = {"summary": summary, "x-required-role": role,
                          "responses": responses}
    if only:  # roles allowed, when not every role from `role` up
        op["x-allowed-roles"] = list(only)
    op["security"] = [] if role == "none" else [{"bearer": []}]
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {
            JSON: {"schema": body}, MSGPACK: {"schema": body},
        }}
    return op


def _q(name: str, schema: dict[str, Any], description: str, required: bool = False,
       ) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": description}


_ENTITY = {"name": "entity", "in": "path", "required": True, "schema": _STR,
           "description": "An entity key kind:id, percent-encoded (a '/' in the id is %2F)."}
_IDEM = {"name": "Idempotency-Key", "in": "header", "required": False,
         "schema": {"type": "string", "minLength": 1, "maxLength": 255},
         "description": "Makes a retry of this write safe (docs/http-api.md)."}
_WRITE_ERRORS = ("409", "422")
_WRITTEN = _answer(_obj({"results": {"type": "array", "items": _ref("WriteResult")},
                         "head": _SEQ}))
_MASS_QUERY = [_q(k, _STR, "as in Where") for k in (
    "system", "type", "name", "reason", "enforcement", "status", "created_after",
    "created_before")]


def _paths() -> dict[str, Any]:
    labels = {"type": "array", "items": _ref("Label")}
    return {
        "/healthz": {"get": _op("Liveness", "none", _answer(_obj(
            {"status": {"const": "ok"}}, {"worker": _INT, "long_polls": _INT})))},
        "/readyz": {"get": _op("Readiness: storage reachable", "none", _answer(_obj(
            {"status": {"const": "ready"}, "head": _SEQ},
            {"sdk_config": {"type": "object"}, "policy": {"type": "object"}})),
            errors=("503",))},
        "/metrics": {"get": _op("Prometheus metrics of the answering process", "reader",
                                {"description": "Prometheus text",
                                 "content": {"text/plain": {"schema": _STR}}},
                                errors=("404",))},
        "/openapi.json": {"get": _op("This document", "none", {
            "description": "The OpenAPI document",
            "content": {JSON: {"schema": {"type": "object"}}}})},
        "/v1/labels": {"post": _op(
            "Write a batch of labels", "writer", _WRITTEN, errors=_WRITE_ERRORS,
            params=[_IDEM],
            body=_obj({"labels": {"type": "array", "items": _ref("Label"), "minItems": 1}},
                      closed=True))},
        "/v1/labels/query": {"post": _op(
            "Active, unexpired labels of a batch of keys", "reader", _answer(_obj(
                {"labels": {"type": "object"}, "head": _SEQ, "aliases": {
                    "type": "object", "additionalProperties": _STR}},
                {"form": {"const": "compact"}})),
            errors=("406",),
            body=_obj({"keys": {"type": "array", "items": _STR, "minItems": 1}},
                      {"form": {"enum": ["labels", "compact"]}}, closed=True))},
        "/v1/labels/retract": {"post": _op(
            "Retract a batch of (entity, source) pairs", "writer", _WRITTEN,
            errors=_WRITE_ERRORS, params=[_IDEM],
            body=_obj({"retract": {"type": "array", "minItems": 1, "items": {
                "type": "object", "properties": {"entity": _STR, "source": _STR},
                "required": ["entity", "source"]}}}, closed=True))},
        "/v1/labels/{entity}": {
            "get": _op("Every unexpired label of one entity", "reader", _answer(_obj(
                {"entity": _STR, "labels": labels, "pending": labels},
                {"reasons": {"type": "object"}})), errors=("400",), params=[_ENTITY]),
            "delete": _op("Retract one source's label", "writer", _answer(_obj(
                {"outcome": {"enum": ["deleted", "not_found"]}, "head": _SEQ})),
                errors=("400", *_WRITE_ERRORS), params=[_ENTITY, _IDEM, _q(
                    "source", _STR, "the source key system/type/name", required=True)]),
        },
        "/v1/history/{entity}": {"get": _op(
            "The audit trail of one entity, newest first", "reader", _answer(_obj({
                "events": {"type": "array", "items": {"type": "object", "required": [
                    "seq", "entity", "source", "action", "actor", "at"]}},
                "next_before": {"type": ["integer", "null"]}})),
            errors=("400",), params=[_ENTITY, _q("limit", {"type": "integer", "minimum": 1},
                                                 "page size"),
                                     _q("before", {"type": "integer", "minimum": 1},
                                        "events before this sequence number")])},
        "/v1/changes": {"get": _op(
            "The change feed", "reader", _answer(_obj({
                "changes": {"type": "array", "items": {"type": "object", "required": [
                    "seq", "entity", "source", "action", "at", "labeled"]}},
                "head": _SEQ, "oldest": _SEQ, "next": _SEQ})),
            errors=("400", "410"), params=[
                _q("after", _SEQ, "changes with seq > after", required=True),
                _q("limit", {"type": "integer", "minimum": 1}, "page size"),
                _q("wait", {"type": "number", "minimum": 0}, "long-poll seconds")])},
        "/v1/pending": {"get": _op(
            "Labels held for review", "reader", _answer(_obj({
                "pending": {"type": "array", "items": {"type": "object", "properties": {
                    "label": _ref("Label"), "seq": _SEQ}, "required": ["label", "seq"]}},
                "next": _NULL_STR})),
            errors=("400",), params=[
                _q("limit", {"type": "integer", "minimum": 1}, "page size"),
                _q("after", _STR, "cursor ENTITY|SOURCE")])},
        "/v1/reasons": {"get": _op("The reason registry of the applied SDK config", "reader",
                                   _answer(_obj({"sdk_config": {"type": ["integer", "null"]},
                                                 "registry": {"type": ["object", "null"]}})))},
        "/v1/bloom": {"get": _op(
            "The bloom filter snapshot", "reader",
            {"description": "The snapshot bytes (docs/bloom.md)",
             "content": {"application/octet-stream": {"schema": _STR}}},
            params=[{"name": "If-None-Match", "in": "header", "required": False,
                     "schema": _STR}],
            extra={"304": {"description": "Unchanged since If-None-Match (no body)"}})},
        "/v1/bloom/rebuild": {"post": _op("Build a bloom snapshot now", "admin", _answer(_obj(
            {"seq": _SEQ, "key_count": _INT})))},
        "/v1/expired/purge": {"post": _op("Purge expired labels now", "admin", _answer(_obj(
            {"purged": _INT, "head": _SEQ})))},
        "/v1/appeals": {"post": _op(
            "Open an appeal", "appellant", _answer(_obj({"appeal": _ref("Appeal")}),
                                                  "Opened"),
            status="201", errors=("422", "501"), only=("appellant", "admin"),
            body=_obj({"entity": _STR, "statement": {"type": "string", "maxLength": 2000}},
                      {"ref": {"type": "string", "maxLength": 200},
                       "labels": {"type": "array", "items": _STR}}, closed=True))},
        "/v1/appeals/events": {"get": _op(
            "The appeals outbox", "appellant", _answer(_obj({
                "events": {"type": "array", "items": {"type": "object", "required": [
                    "seq", "event", "at", "appeal"]}}, "next": _SEQ})),
            errors=("400", "501"), params=[
                _q("after", _SEQ, "events with seq > after"),
                _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size")])},
        "/v1/appeals/{appeal_id}": {"get": _op(
            "One appeal", "appellant", _answer(_obj({"appeal": _ref("Appeal")})),
            errors=("400", "404", "501"), params=[
                {"name": "appeal_id", "in": "path", "required": True, "schema": _INT}])},
        "/v1/labels/select": {"post": _op(
            "What a label query matches", "reader", _answer(_ref("Selection")),
            body=_obj({"where": _ref("Where")}, closed=True))},
        "/v1/labels/export": {"get": _op(
            "Every label a query matches, as JSONL", "reader",
            {"description": "One label per line",
             "content": {"application/x-ndjson": {"schema": _STR}}},
            errors=("400",), params=_MASS_QUERY)},
        "/v1/jobs/retract": {"post": _op(
            "Retract every label a query matches, as one job", "admin", _answer({
                "oneOf": [_obj({"job": _ref("Job")}),
                          {"allOf": [_ref("Selection"), _obj({"dry_run": {"const": True}})]}]}),
            errors=("422",),
            body=_obj({"where": _ref("Where"), "reason": _STR},
                      {"dry_run": {"type": "boolean"}}, closed=True))},
        "/v1/jobs/{job_id}": {"get": _op(
            "A job's state", "reader", _answer(_obj({"job": _ref("Job")})),
            errors=("404",), params=[_JOB_ID])},
        "/v1/jobs/{job_id}/resume": {"post": _op(
            "Run an unfinished job on from its cursor", "admin",
            _answer(_obj({"job": _ref("Job")})), errors=("404",), params=[_JOB_ID])},
    }


_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": _STR}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the store's API (a fresh copy each call)."""
    return copy.deepcopy({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "enforce-sdk Label Store",
            "version": "1",
            "description": "The Label Store HTTP API (docs/http-api.md). Bodies travel as "
                           "JSON or msgpack (Content-Type / Accept); every body carries "
                           '"schema": 1 (a request may omit it). Errors have the Error '
                           "shape; x-required-role is the least token role an operation "
                           "needs (appellant < reader < writer < admin).",
        },
        "paths": _paths(),
        "components": {
            "schemas": _SCHEMAS,
            "responses": {"Problem": _answer(_ref("Error"), "An error (see `error`)")},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A token of the store config"}},
        },
        "security": [{"bearer": []}],
    })


async def openapi_json(request: Request) -> Response:
    return JSONResponse(document())


def openapi_routes() -> list[Route]:
    return [Route("/openapi.json", openapi_json, methods=["GET"])]
