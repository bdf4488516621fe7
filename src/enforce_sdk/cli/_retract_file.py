"""`enforce-sdk labels retract FILE`: retract the (entity, source) pairs a file lists.

FILE is JSONL or msgpack (as `labels import` reads, `-` for stdin): each record
a label (what `labels export` writes) or just `{"entity": ..., "source": ...}`,
the source an object or a `system/type/name` key. Every record is checked
before anything is sent: one bad record refuses the whole file, naming every
bad line, and nothing is retracted. Pairs are then sent in batches of the
store's `max_batch_labels` through `POST /v1/labels/retract` (writer token;
each batch all-or-nothing and applied at most once); the summary counts
`deleted` and `not_found`.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import click

from .._errors import LabelValidationError
from ..model.keys import canonical_key
from ..model.label import Source
from ._common import EXIT_REJECTED, CliError, translate_errors
from ._import_input import read_records

MAX_SHOWN = 20  # bad lines listed before "... and N more"


def read_pairs(path: str) -> list[tuple[str, str]]:
    """The (canonical entity, source key) pairs of FILE; CliError naming every bad record."""
    stream = sys.stdin.buffer if path == "-" else Path(path).open("rb")  # noqa: SIM115
    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    try:
        for record in read_records(stream):
            try:
                value: Any = record.value if record.value is not None else json.loads(record.raw)
                pairs.append(_pair(value))
            except (ValueError, TypeError, LabelValidationError) as exc:
                problems.append(f"record {record.position}: {exc}")
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    if problems:
        shown = problems[:MAX_SHOWN]
        more = len(problems) - len(shown)
        raise CliError("nothing retracted; bad records:\n  " + "\n  ".join(shown)
                       + (f"\n  ... and {more} more" if more else ""), EXIT_REJECTED)
    return list(dict.fromkeys(pairs))


def _pair(value: Any) -> tuple[str, str]:
    if not isinstance(value, dict):
        raise TypeError(f"must be an object, got {type(value).__name__}")
    missing = [k for k in ("entity", "source") if k not in value]
    if missing:
        raise ValueError(f"missing {' and '.join(missing)}")
    entity = value["entity"]
    if not isinstance(entity, str):
        raise TypeError("entity: must be a string")
    source = value["source"]
    parsed = Source.from_key(source) if isinstance(source, str) else Source.from_dict(source)
    return canonical_key(entity), parsed.key


def retract_file(path: str, dry_run: bool, as_json: bool, url: str, token: str | None,
                 timeout: float) -> None:
    from ..store_client.client import LabelStoreClient

    with translate_errors(url):
        pairs = read_pairs(path)
    if dry_run or not pairs:
        _say(as_json, {"pairs": len(pairs), "dry_run": dry_run},
             f"{len(pairs)} (entity, source) pairs to retract" + (" (dry run)" if dry_run else ""))
        return
    with translate_errors(url), LabelStoreClient(url, token=token, timeout=timeout) as client:
        results = client.retract_many(pairs)
    counts = Counter(r.outcome.value for r in results)
    _say(as_json, {"pairs": len(pairs), **dict(sorted(counts.items()))},
         f"retracted {len(pairs)} pairs: " + ", ".join(f"{k} {v}" for k, v in sorted(
             counts.items())))


def _say(as_json: bool, answer: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(answer) if as_json else text)
