"""`enforce-sdk labels ...`: put, get, rm, history, pending and import labels in a store."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import click

from .._errors import LabelValidationError, StoreError
from ..model.keys import canonical_key
from ..model.label import (
    Enforcement,
    Label,
    MetadataValue,
    Source,
    SourceType,
    format_time,
    parse_time,
)
from ..store_client.client import LabelStoreClient
from ._common import (
    EXIT_REJECTED,
    EXIT_USAGE,
    CliError,
    describe_store_error,
    fail,
    store_options,
    translate_errors,
)
from ._import import (
    DEFAULT_CHUNK_SIZE,
    CheckpointFile,
    ImportSummary,
    LabelImporter,
    format_summary,
)
from ._import_input import InputFormat, read_records

_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@click.group()
def labels() -> None:
    """Read and write labels in a Label Store."""


@contextmanager
def _client(url: str, token: str | None, timeout: float, **kwargs: Any) -> Iterator[LabelStoreClient]:
    with translate_errors(url), LabelStoreClient(url, token=token, timeout=timeout,
                                                 **kwargs) as client:
        yield client


def _echo_json(payload: object) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=False, default=str))


# -- put / rm -----------------------------------------------------------------------------


def _parse_meta(items: tuple[str, ...]) -> dict[str, MetadataValue]:
    meta: dict[str, MetadataValue] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--meta")
        value: MetadataValue
        try:
            value = json.loads(raw)  # numbers, true/false, null, "quoted strings"
        except ValueError:
            value = raw
        if isinstance(value, list | dict):
            value = raw
        meta[key] = value
    return meta


def _parse_ttl(text: str) -> timedelta:
    unit = text[-1:].lower()
    try:
        amount = float(text[:-1]) if unit in _TTL_UNITS else float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration like 30m, 12h or 7d",
                                 param_hint="--ttl") from None
    seconds = amount * _TTL_UNITS.get(unit, 1)
    if not seconds > 0:  # NaN too
        raise click.BadParameter("must be positive", param_hint="--ttl")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise click.BadParameter(f"{text!r} is out of range", param_hint="--ttl") from None


@labels.command("put")
@click.argument("entity")
@click.option("--source", "source_key", required=True, metavar="SYSTEM/TYPE/NAME",
              help="Who decides, e.g. review_tool/human/rev-0042.")
@click.option("--enforcement", required=True,
              type=click.Choice(["allow", "limit", "block", "remove"], case_sensitive=False))
@click.option("--reason", required=True, help="Policy, e.g. spam, porn, hate.")
@click.option("--confidence", type=float, default=None, help="Model score in 0..1.")
@click.option("--expires-at", default=None, metavar="RFC3339", help="When the label lapses.")
@click.option("--ttl", default=None, metavar="DURATION", help="Or: lapse after 30m, 12h, 7d...")
@click.option("--created-at", default=None, metavar="RFC3339", help="Default: now.")
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Metadata entry (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@store_options
def put_label(entity: str, source_key: str, enforcement: str, reason: str,
              confidence: float | None, expires_at: str | None, ttl: str | None,
              created_at: str | None, meta: tuple[str, ...], as_json: bool,
              url: str, token: str | None, timeout: float) -> None:
    """Write one label (replaces this source's label on ENTITY).

    Exit 1 if the label is rejected (validation), 2 on usage or connection errors.
    """
    if expires_at and ttl:
        raise click.UsageError("give --expires-at or --ttl, not both")
    metadata = _parse_meta(meta)
    try:
        created = (datetime.now(UTC) if created_at is None
                   else parse_time(created_at, "created_at"))
        expires = parse_time(expires_at, "expires_at") if expires_at else None
        if ttl:
            lifetime = _parse_ttl(ttl)
            try:
                expires = created + lifetime
            except OverflowError:
                raise LabelValidationError(f"created_at + --ttl {ttl} is past year 9999",
                                           field="expires_at") from None
        label = _label_or_every_problem(
            entity=entity, source=source_key, enforcement=enforcement, reason=reason,
            created_at=created, expires_at=expires, confidence=confidence, metadata=metadata)
    except LabelValidationError as exc:
        fail(f"label rejected: {exc}", EXIT_REJECTED)
    with _client(url, token, timeout) as client:
        result = client.put([label])[0]
    if as_json:
        _echo_json({"entity": result.entity, "source": result.source,
                    "outcome": result.outcome.value})
    else:
        click.echo(f"{result.outcome.value}: {result.entity} {result.source}")


def _label_or_every_problem(*, source: str, **fields: Any) -> Label:
    """The label, or one LabelValidationError naming every field that is wrong (not only
    the first): each field is tried on its own beside known-good values of the others."""
    problems: list[str] = []
    try:
        parsed = Source.from_key(source)
    except LabelValidationError as exc:
        problems.append(f"source: {exc}")
        parsed = _GOOD["source"]
    try:
        if not problems:
            return Label(source=parsed, **fields)
    except LabelValidationError:
        pass
    for name, value in fields.items():
        trial = {**_GOOD, name: value, "source": parsed}
        if name == "expires_at":  # checked against created_at
            trial["created_at"] = fields["created_at"]
        try:
            Label(**trial)
        except LabelValidationError as exc:
            problems.append(f"{exc.field or name}: {exc.problem}")
    if not problems:  # only a combination is wrong: say what the full label says
        Label(source=parsed, **fields)
    raise LabelValidationError("; ".join(problems))


_GOOD: dict[str, Any] = {
    "entity": "pin:1", "source": Source("cli", SourceType.HUMAN, "check"),
    "enforcement": Enforcement.BLOCK, "reason": "spam",
    "created_at": datetime(2026, 1, 1, tzinfo=UTC), "expires_at": None, "confidence": None,
    "metadata": {},
}


@labels.command("rm")
@click.argument("entity")
@click.option("--source", "source_key", required=True, metavar="SYSTEM/TYPE/NAME",
              help="Whose label to retract.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@store_options
def rm_label(entity: str, source_key: str, as_json: bool, url: str, token: str | None,
             timeout: float) -> None:
    """Retract one source's label on ENTITY (prints deleted or not_found)."""
    with translate_errors(url):
        key = canonical_key(entity)
        Source.from_key(source_key)
    with _client(url, token, timeout) as client:
        outcome = client.delete(key, source_key)
    if as_json:
        _echo_json({"entity": key, "source": source_key, "outcome": outcome.value})
    else:
        click.echo(f"{outcome.value}: {key} {source_key}")


# -- reads --------------------------------------------------------------------------------


def _label_line(label: Label) -> str:
    parts = [f"{label.enforcement.wire:<7}", f"{label.reason:<15}", f"{label.source.key:<40}",
             format_time(label.created_at)]
    if label.confidence is not None:
        parts.append(f"confidence={label.confidence:g}")
    if label.expires_at is not None:
        parts.append(f"expires={format_time(label.expires_at)}")
    if label.metadata:
        parts.append(json.dumps(dict(label.metadata), separators=(",", ":")))
    return "  ".join(parts)


@labels.command("get")
@click.argument("entity")
@click.option("--json", "as_json", is_flag=True, help="Print the store's answer as JSON.")
@store_options
def get_labels(entity: str, as_json: bool, url: str, token: str | None, timeout: float) -> None:
    """Show every label of ENTITY: served ones and those pending review."""
    with translate_errors(url):
        key = canonical_key(entity)
    with _client(url, token, timeout) as client:
        found = client.get(key)
    if as_json:
        _echo_json({"entity": found.entity, "labels": [lb.to_dict() for lb in found.labels],
                    "pending": [lb.to_dict() for lb in found.pending]})
        return
    click.echo(f"{found.entity}: {len(found.labels)} active, {len(found.pending)} pending")
    for label in found.labels:
        click.echo("  " + _label_line(label))
    if found.pending:
        click.echo("  pending review:")
        for label in found.pending:
            click.echo("    " + _label_line(label))


@labels.command("history")
@click.argument("entity")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--before", type=click.IntRange(min=1), default=None, metavar="SEQ",
              help="Only events older than this sequence number (paging).")
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON.")
@store_options
def history(entity: str, limit: int, before: int | None, as_json: bool, url: str,
            token: str | None, timeout: float) -> None:
    """Show the audit history of ENTITY, newest first."""
    with translate_errors(url):
        key = canonical_key(entity)
    with _client(url, token, timeout) as client:
        page = client.history(key, limit=limit, before=before)
    if as_json:
        _echo_json({
            "events": [
                {"seq": e.seq, "entity": e.entity, "source": e.source_key,
                 "action": e.action.value, "actor": e.actor, "at": format_time(e.at),
                 "before": None if e.before is None else e.before.to_dict(),
                 "after": None if e.after is None else e.after.to_dict(),
                 "status": None if e.status is None else e.status.value}
                for e in page.events
            ],
            "next_before": page.next_before,
        })
        return
    click.echo(f"{key}: {len(page.events)} events (newest first)")
    for e in page.events:
        change = ""
        if e.after is not None:
            change = f"{e.after.enforcement.wire} {e.after.reason}"
        elif e.before is not None:
            change = f"(was {e.before.enforcement.wire} {e.before.reason})"
        status = f" [{e.status.value}]" if e.status is not None else ""
        click.echo(f"  #{e.seq:<6} {format_time(e.at)}  {e.action.value:<7} {e.source_key:<40} "
                   f"by {e.actor}  {change}{status}")
    if page.next_before is not None:
        click.echo(f"  more: --before {page.next_before}")


@labels.command("pending")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--after", default=None, metavar="CURSOR", help="The `next` cursor of a page.")
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@store_options
def pending(limit: int, after: str | None, as_json: bool, url: str, token: str | None,
            timeout: float) -> None:
    """List labels held for human review (automated negatives on trusted entities)."""
    with _client(url, token, timeout) as client:
        page = client.pending(limit=limit, after=after)
    if as_json:
        _echo_json({"pending": [{"label": p.label.to_dict(), "seq": p.seq} for p in page.pending],
                    "next": page.next})
        return
    click.echo(f"{len(page.pending)} labels pending review")
    for p in page.pending:
        click.echo(f"  #{p.seq:<6} {p.label.entity:<30} {_label_line(p.label)}")
    if page.next is not None:
        click.echo(f"  more: --after '{page.next}'")


# -- import -------------------------------------------------------------------------------


def _default_checkpoint(input_path: str) -> Path | None:
    if input_path == "-":
        return None
    return Path(input_path + ".checkpoint.json")


def _input_size(stream: BinaryIO) -> int | None:
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


@labels.command("import")
@click.argument("input_path", metavar="[INPUT]", default="-",
                type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--format", "fmt", type=click.Choice(["auto", "jsonl", "msgpack"]),
              default="auto", show_default=True,
              help="JSONL (one label object per line) or a stream of msgpack maps.")
@click.option("--chunk-size", type=click.IntRange(1, 10_000), default=None,
              help=f"Labels per request, stored all-or-nothing [default: {DEFAULT_CHUNK_SIZE}, "
              "or the checkpoint's when resuming].")
@click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Progress file [default: INPUT.checkpoint.json; none for stdin].")
@click.option("--no-checkpoint", is_flag=True, help="Keep no progress file.")
@click.option("--resume", is_flag=True,
              help="Continue after the last chunk the checkpoint records (checked against "
              "the input).")
@click.option("--strict", is_flag=True, help="Stop at the first rejected chunk (exit 1).")
@click.option("--retries", type=click.IntRange(0, 20), default=3, show_default=True,
              help="Re-sends of a chunk (same idempotency key) when the store is unreachable, "
              "times out or answers 408/409/5xx.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr [default: only when stderr is a terminal].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@store_options
def import_labels(input_path: str, fmt: str, chunk_size: int | None,
                  checkpoint_path: Path | None, no_checkpoint: bool, resume: bool, strict: bool,
                  retries: int, progress: bool | None, as_json: bool, url: str,
                  token: str | None, timeout: float) -> None:
    """Import labels from INPUT (a file, or - for stdin) in all-or-nothing chunks.

    Each chunk is applied at most once: a chunk whose answer was lost is re-sent
    with the same idempotency key and its first outcome reported. Identical
    labels are no-ops, so re-running an import is safe. A chunk with
    an invalid label is rejected whole and reported with its reasons; the
    import goes on (or stops, with --strict). Exit 0 if everything was stored,
    1 if some chunk was rejected, 2 on usage or connection errors.
    """
    if no_checkpoint and (checkpoint_path or resume):
        raise click.UsageError("--no-checkpoint cannot be combined with --checkpoint/--resume")
    checkpoint = None if no_checkpoint else (checkpoint_path or _default_checkpoint(input_path))
    if resume and checkpoint is None:
        raise click.UsageError("--resume needs --checkpoint when reading stdin")
    checkpoint_file = None if checkpoint is None else CheckpointFile(checkpoint)
    with translate_errors(url):
        previous = checkpoint_file.load() if (resume and checkpoint_file) else None
    size = chunk_size or (previous.chunk_size if previous else DEFAULT_CHUNK_SIZE)
    name = "stdin" if input_path == "-" else input_path
    input_format: InputFormat | None = None if fmt == "auto" else fmt  # type: ignore[assignment]
    stream: BinaryIO
    with translate_errors(url):
        stream = sys.stdin.buffer if input_path == "-" else open(input_path, "rb")  # noqa: SIM115
    try:
        summary = _run_import(stream, input_format, name, size, checkpoint_file, resume, strict,
                              retries, progress, url, token, timeout)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    if as_json:
        _echo_json(summary.to_dict())
    else:
        click.echo(format_summary(summary, input_name=name))
        if checkpoint_file is not None:
            click.echo(f"checkpoint: {checkpoint_file.path}")
    sys.exit(summary.exit_code)


def _run_import(stream: BinaryIO, input_format: InputFormat | None, name: str, size: int,
                checkpoint_file: CheckpointFile | None, resume: bool, strict: bool,
                retries: int, progress: bool | None, url: str, token: str | None,
                timeout: float) -> ImportSummary:
    from tqdm import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    total = _input_size(stream)
    bar = tqdm(total=total, unit="B" if total is not None else " labels",
               unit_scale=total is not None, desc="import", file=sys.stderr, disable=not show,
               dynamic_ncols=True)
    def advance(records: int, nbytes: int) -> None:
        bar.update(nbytes if total is not None else records)

    # One request per chunk, whatever the client's default batch size, so a chunk is atomic.
    # The importer re-sends a chunk itself (--retries, with the chunk's key): no client retries.
    with bar, _client(url, token, timeout, max_batch_labels=max(size, 1),
                      write_retries=0) as client:
        importer = LabelImporter(
            client, chunk_size=size, strict=strict, retries=retries,
            on_chunk=advance,
        )
        try:
            return importer.run(read_records(stream, input_format), input_name=name,
                                checkpoint_file=checkpoint_file, resume=resume)
        except StoreError as exc:
            hint = " (continue with --resume)" if checkpoint_file is not None else ""
            state = checkpoint_file.load() if checkpoint_file is not None else None
            done = f"; {state.records_done} records done" if state is not None else ""
            raise CliError(f"import stopped: {describe_store_error(exc, url)}{done}{hint}",
                           EXIT_USAGE) from exc
        except KeyboardInterrupt:
            hint = " (continue with --resume)" if checkpoint_file is not None else ""
            raise CliError(f"import interrupted{hint}", 130) from None
