"""`enforce-sdk bloom`: inspect a bloom snapshot, or build one from a label export.

EXPORT for `build` is a text file (UTF-8), one record per line, either:
- a label object as JSON, exactly what `Label.to_dict()` gives (a JSONL label
  export); the label's entity key goes into the filter, whatever its
  enforcement or expiry (the filter only says "no label at all"); or
- a bare entity key (`pin:123`, `domain:Example.COM`), canonicalised first.
The two may be mixed. Blank lines and lines starting with `#` are skipped. Any
bad line stops the build with its line number and nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .._errors import InvalidInputError
from ..model.keys import canonical_key
from ..model.label import Label
from ..native.bloom import BloomFilter
from ._common import EXIT_REJECTED, fail, store_options, translate_errors, with_errors


@click.group()
def bloom() -> None:
    """Bloom filter snapshots: inspect and build."""


def _describe(bloom_filter: BloomFilter, path: Path) -> dict[str, Any]:
    info = bloom_filter.info()
    info["path"] = str(path)
    info["file_bytes"] = bloom_filter.snapshot_size
    return info


@bloom.command("info")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@with_errors
def info_command(path: Path, as_json: bool) -> None:
    """Check a snapshot whole (checksums included) and print its parameters and figures."""
    info = _describe(BloomFilter.load(path), path)
    if as_json:
        click.echo(json.dumps(info, sort_keys=True))
        return
    rows = [
        ("path", info["path"]),
        ("format version", info["format_version"]),
        ("hash", f"{info['hash_name']} (id {info['hash_id']})"),
        ("seed", info["seed"]),
        ("sequence", info["seq"]),
        ("keys", info["key_count"]),
        (
            "size",
            f"{info['size_bytes']} bytes ({info['block_count']} blocks of 64 B), "
            f"file {info['file_bytes']} bytes",
        ),
        ("bits per key (k)", info["k"]),
        ("bytes per key", f"{info['bytes_per_key']:.3f}"),
        ("estimated fp", f"{info['estimated_fp']:.6f}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value}")


def read_export_keys(path: Path) -> list[str]:
    """Distinct canonical entity keys of an export, in first-seen order."""
    keys: dict[str, None] = {}
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                if line.startswith("{"):
                    key = Label.from_dict(json.loads(line)).entity
                else:
                    key = canonical_key(line)
            except json.JSONDecodeError as exc:
                fail(f"{path}:{number}: not valid JSON: {exc.msg}", EXIT_REJECTED)
            except InvalidInputError as exc:
                fail(f"{path}:{number}: {exc}", EXIT_REJECTED)
            keys[key] = None
    return list(keys)


@bloom.command("build")
@click.option(
    "--from",
    "export",
    required=True,
    metavar="EXPORT",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSONL label export (Label.to_dict() per line) or a file of entity keys, one a line.",
)
@click.option(
    "--out",
    required=True,
    metavar="PATH",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the snapshot (atomically).",
)
@click.option(
    "--fp",
    "fp_rate",
    type=float,
    default=0.01,
    show_default=True,
    help="Target false-positive rate at the number of keys read, in (0, 1).",
)
@click.option(
    "--seq",
    type=click.IntRange(min=0, max=2**64 - 1),
    default=0,
    show_default=True,
    help="Change sequence number the export reflects (stored in the snapshot).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@with_errors
def build_command(export: Path, out: Path, fp_rate: float, seq: int, as_json: bool) -> None:
    """Build a snapshot sized for the keys in EXPORT at the target FP rate."""
    keys = read_export_keys(export)
    bloom_filter = BloomFilter.for_capacity(max(len(keys), 1), fp_rate)
    bloom_filter.add_many(keys)
    bloom_filter.seq = seq
    bloom_filter.save(out)
    if as_json:
        click.echo(json.dumps({**_describe(bloom_filter, out), "keys_read": len(keys)},
                              indent=2))
        return
    click.echo(
        f"wrote {out}: {len(keys)} keys, {bloom_filter.size_bytes} bytes "
        f"({bloom_filter.size_bytes / max(len(keys), 1):.3f} B/key), k={bloom_filter.k}, "
        f"seq={seq}, estimated fp {bloom_filter.estimated_fp:.6f}"
    )


@bloom.command("rebuild")
@click.option("--json", "as_json", is_flag=True, help="Print the store's answer as JSON.")
@store_options
def rebuild_command(as_json: bool, url: str, token: str | None, timeout: float) -> None:
    """Have the store rebuild its bloom snapshot now (admin token)."""
    from ..store_client.client import LabelStoreClient

    with translate_errors(url), LabelStoreClient(url, token=token, timeout=timeout) as client:
        figures = client.rebuild_bloom()
    figures.pop("schema", None)
    if as_json:
        click.echo(json.dumps(figures, indent=2, default=str))
    else:
        click.echo("rebuilt: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
