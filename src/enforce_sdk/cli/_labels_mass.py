"""`enforce-sdk labels export` and `enforce-sdk labels retract --where`: mass actions.

Both speak the store's mass-action API (docs/http-api.md): export streams every
label a query matches as JSONL (what `labels import` reads); retract shows a dry
run (count, counts by source and reason, a sample), asks for confirmation
unless --yes, then retracts every match as one job (admin token), audited as
`<token> job:<id>`; `--resume JOB` finishes an interrupted job from its cursor.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import httpx

from ._common import EXIT_REJECTED, EXIT_USAGE, CliError, store_options
from ._labels import labels
from ._retract_file import retract_file

QUERY_KEYS = ("system", "type", "name", "reason", "enforcement", "status", "created_after",
              "created_before")


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _fail(answer: httpx.Response, url: str) -> None:
    if answer.status_code < 400:
        return
    try:
        body = answer.json()
        where = f"{body['field']}: " if body.get("field") else ""
        detail = f"{where}{body.get('message', body)}"
    except (ValueError, KeyError, AttributeError):
        detail = answer.text[:200]
    code = EXIT_REJECTED if answer.status_code in (400, 413, 422) else EXIT_USAGE
    raise CliError(f"the label store at {url} answered {answer.status_code}: {detail}", code)


def _request(method: str, url: str, path: str, token: str | None, timeout: float | None,
             **kw: Any) -> dict[str, Any]:
    try:
        answer = httpx.request(method, url.rstrip("/") + path, headers=_headers(token),
                               timeout=timeout, **kw)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach the label store at {url}: {exc}", EXIT_USAGE) from exc
    _fail(answer, url)
    body: dict[str, Any] = answer.json()
    return body


def _where(items: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in QUERY_KEYS:
            raise click.BadParameter(f"{item!r}: use FIELD=VALUE with FIELD one of "
                                     f"{', '.join(QUERY_KEYS)}", param_hint="--where")
        if key in out:
            raise click.BadParameter(f"{key} given twice", param_hint="--where")
        out[key] = value.strip()
    return out


@labels.command("export")
@click.option("--where", "where", multiple=True, metavar="FIELD=VALUE",
              help=f"Match labels by {', '.join(QUERY_KEYS)} (repeatable; all must hold).")
@click.option("-o", "--output", type=click.File("w"), default="-",
              help="Write here instead of stdout.")
@store_options
def export_labels(where: tuple[str, ...], output: Any, url: str, token: str | None,
                  timeout: float) -> None:
    """Export every label matching --where as JSONL (the form `labels import` reads)."""
    params = _where(where)
    count = 0
    try:
        with httpx.stream("GET", url.rstrip("/") + "/v1/labels/export", params=params,
                          headers=_headers(token), timeout=timeout) as answer:
            if answer.status_code >= 400:
                answer.read()
                _fail(answer, url)
            for line in answer.iter_lines():
                if line:
                    output.write(line + "\n")
                    count += 1
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach the label store at {url}: {exc}", EXIT_USAGE) from exc
    click.echo(f"exported {count} labels", err=True)


def _show_selection(sel: dict[str, Any]) -> None:
    click.echo(f"{sel['total']} labels match")
    for title in ("by_source", "by_reason", "by_enforcement", "by_status"):
        counts = ", ".join(f"{k}={v}" for k, v in sorted(sel[title].items(),
                                                         key=lambda kv: -kv[1])[:10])
        click.echo(f"  {title.replace('_', ' ')}: {counts}")
    if sel["sample"]:
        click.echo("  sample:")
        for item in sel["sample"][:10]:
            lab = item["label"]
            src = lab["source"]
            click.echo(f"    {lab['entity']:<30} {src['system']}/{src['type']}/{src['name']} "
                       f"{lab['enforcement']} {lab['reason']} [{item['status']}]")


@labels.command("retract")
@click.argument("file", required=False, metavar="[FILE]")
@click.option("--where", "where", multiple=True, metavar="FIELD=VALUE",
              help=f"Match labels by {', '.join(QUERY_KEYS)} (repeatable; all must hold).")
@click.option("--reason", "why", default=None, help="Why (required; kept with the job).")
@click.option("--dry-run", is_flag=True, help="Only show what would be retracted.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation after the dry run.")
@click.option("--resume", "job_id", default=None, metavar="JOB",
              help="Finish an interrupted job from its cursor.")
@click.option("--json", "as_json", is_flag=True, help="Print the store's answer as JSON.")
@store_options
def retract_where(file: str | None, where: tuple[str, ...], why: str | None, dry_run: bool,
                  yes: bool, job_id: str | None, as_json: bool, url: str, token: str | None,
                  timeout: float) -> None:
    """Retract every label matching --where, as one audited job (admin token); or the
    (entity, source) pairs FILE lists (JSONL/msgpack, `-` for stdin; writer token).

    A dry run (count, counts by source and reason, a sample) comes first; without
    --yes you confirm it. Exit 1 if the store refuses the query (or a FILE record is
    bad: nothing is retracted), 2 on other errors.
    """
    if file is not None:
        if where or job_id or why:
            raise click.UsageError("give FILE or --where/--resume, not both")
        retract_file(file, dry_run, as_json, url, token, timeout)
        return
    if job_id is not None:
        if where or why:
            raise click.UsageError("--resume takes the job's own query and reason")
        done = _request("POST", url, f"/v1/jobs/{job_id}/resume", token, timeout)["job"]
        _report(done, as_json)
        return
    if not where:
        raise click.UsageError("give at least one --where FIELD=VALUE")
    if not why:
        raise click.UsageError("--reason is required: say why these labels are retracted")
    body = {"where": _where(where), "reason": why}
    selection = _request("POST", url, "/v1/jobs/retract", token, timeout,
                         json={**body, "dry_run": True})
    if as_json and dry_run:
        click.echo(json.dumps(selection, indent=2))
        return
    _show_selection(selection)
    if dry_run or selection["total"] == 0:
        return
    if not yes and not click.confirm(f"retract these {selection['total']} labels?", err=True):
        raise CliError("nothing retracted", EXIT_USAGE)
    # the retraction itself may run long: no read timeout on it
    done = _request("POST", url, "/v1/jobs/retract", token, None, json=body)["job"]
    _report(done, as_json)


def _report(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(job, indent=2))
    else:
        click.echo(f"job {job['id']}: {job['state']}, {job['retracted']} retracted of "
                   f"{job['matched']} matched")
    if job["state"] != "done":
        click.echo(f"the job stopped: {job.get('error')}; continue with --resume {job['id']}",
                   err=True)
        sys.exit(EXIT_USAGE)
