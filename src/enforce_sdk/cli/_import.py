"""Bulk import of labels: read a JSONL or msgpack stream, send it in chunks, checkpoint.

The unit of work is the *chunk*: `chunk_size` consecutive records of the input.
A chunk is one `POST /v1/labels`, which the store applies all-or-nothing, so a
chunk is either entirely stored or entirely absent, whatever happens.

- Applied at most once: each chunk is sent with an idempotency key made of
  the import's run id (kept in the checkpoint) and the chunk's number. A
  chunk whose answer was lost (timeout, dropped connection, 503 after the
  store applied it) is re-sent with the same key, and the store answers what
  the first attempt did instead of applying it again, so the counts report
  what really happened (`recovered` counts such chunks). If every attempt
  fails, the import stops; `--resume` re-sends that chunk with the same key
  (within the store's `[idempotency] retention_seconds`) and learns its fate.
- Rejections: if any record of a chunk fails validation (here, before sending,
  or in the store), the whole chunk is rejected and reported with every reason
  found; the import goes on with the next chunk, or stops there with `strict`.
- Resumable: after each chunk the checkpoint file records how many records are
  done and a SHA-256 of their bytes. Resuming skips that many records after
  checking the digest (so a different input is refused, not half-imported).
  Without `strict` a rejected chunk counts as done (it is in the report); with
  `strict` it does not, so a resume after fixing it sends it again.

Everything here is independent of click, so tests drive it directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .._errors import InvalidInputError, StoreError, StoreResponseError, StoreUnavailableError
from ..model.label import Label
from ._import_input import ImportAbortedError, Record, chunked, parse_label

DEFAULT_CHUNK_SIZE = 500
CHECKPOINT_KIND = "enforce-sdk-import-checkpoint"
CHECKPOINT_VERSION = 1
MAX_REPORTED_REJECTIONS = 100  # kept in the checkpoint and summary; counts stay exact
MAX_REASONS_PER_CHUNK = 20
_RETRY_STATUSES = frozenset({408, 409, 500, 502, 503, 504})  # outcome open: re-send, same key
_REJECT_STATUSES = frozenset({400, 413, 422})




class WriteResultLike(Protocol):
    @property
    def outcome(self) -> object: ...


class LabelSink(Protocol):
    """Where chunks go: `LabelStoreClient` in production, a fake in unit tests.

    A result may carry `replayed` (true: an earlier attempt applied the chunk).
    """

    def put(self, labels: Sequence[Label], *,
            idempotency_key: str | None = None) -> Sequence[WriteResultLike]: ...




@dataclass(slots=True)
class Rejection:
    """A chunk the import did not store, and why."""

    chunk: int
    first: int  # position of its first record
    last: int
    labels: int  # records in the chunk
    reasons: list[str]


@dataclass(slots=True)
class ImportSummary:
    """Totals over the whole import, including the part done before a resume."""

    records: int = 0
    chunks: int = 0
    written: int = 0
    noop: int = 0
    pending: int = 0
    rejected: int = 0
    rejected_chunks: int = 0
    recovered: int = 0  # chunks applied by an attempt whose answer was lost, learnt by a retry
    rejections: list[Rejection] = field(default_factory=list)
    resumed_after: int = 0  # records skipped because the checkpoint had them
    complete: bool = False
    stopped: str | None = None  # why the import stopped early, if it did

    def record_rejection(self, rejection: Rejection) -> None:
        self.rejected += rejection.labels
        self.rejected_chunks += 1
        if len(self.rejections) < MAX_REPORTED_REJECTIONS:
            self.rejections.append(rejection)

    @property
    def exit_code(self) -> int:
        if self.stopped is not None and self.rejected == 0:
            return 2
        return 1 if self.rejected else 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportSummary:
        rejections = [Rejection(**r) for r in data.get("rejections", [])]
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["rejections"] = rejections
        return cls(**fields)


# -- reading ------------------------------------------------------------------------------
















# -- checkpoint ---------------------------------------------------------------------------


@dataclass(slots=True)
class Checkpoint:
    """What the import has finished: records and chunks done, a digest of their bytes."""

    input: str
    chunk_size: int
    records_done: int = 0
    chunks_done: int = 0
    sha256: str = hashlib.sha256().hexdigest()
    summary: ImportSummary = field(default_factory=ImportSummary)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # prefix of chunk keys

    def chunk_key(self, index: int) -> str:
        """The idempotency key of chunk `index` of this import (the same on a resume)."""
        return f"import-{self.run_id}-{index}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": CHECKPOINT_KIND,
            "version": CHECKPOINT_VERSION,
            "input": self.input,
            "chunk_size": self.chunk_size,
            "records_done": self.records_done,
            "chunks_done": self.chunks_done,
            "sha256": self.sha256,
            "summary": self.summary.to_dict(),
            "run_id": self.run_id,
        }

    @classmethod
    def from_dict(cls, data: object, path: Path) -> Checkpoint:
        if (not isinstance(data, dict) or data.get("kind") != CHECKPOINT_KIND
                or data.get("version") != CHECKPOINT_VERSION):
            raise ImportAbortedError(f"{path} is not an import checkpoint of this version",
                                     field="checkpoint")
        try:
            return cls(
                input=str(data["input"]),
                chunk_size=int(data["chunk_size"]),
                records_done=int(data["records_done"]),
                chunks_done=int(data["chunks_done"]),
                sha256=str(data["sha256"]),
                summary=ImportSummary.from_dict(data["summary"]),
                run_id=str(data.get("run_id") or uuid.uuid4().hex),  # none before keys existed
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ImportAbortedError(f"{path} is a damaged checkpoint: {exc}",
                                     field="checkpoint") from exc


class CheckpointFile:
    """A checkpoint on disk, replaced atomically (write, fsync, rename) after each chunk."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> Checkpoint | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ImportAbortedError(f"{self.path} is not valid JSON: {exc}",
                                     field="checkpoint") from exc
        return Checkpoint.from_dict(data, self.path)

    def save(self, checkpoint: Checkpoint) -> None:
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(checkpoint.to_dict(), out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


# -- the import ---------------------------------------------------------------------------


ProgressHook = Callable[[int, int], None]
"""Called after each chunk with (records in the chunk, bytes in the chunk)."""


@dataclass(slots=True)
class LabelImporter:
    """Sends records to a sink chunk by chunk, keeping the checkpoint and the summary."""

    sink: LabelSink
    chunk_size: int = DEFAULT_CHUNK_SIZE
    strict: bool = False
    retries: int = 3
    backoff: float = 0.5
    sleep: Callable[[float], None] = time.sleep
    on_chunk: ProgressHook | None = None

    def run(
        self,
        records: Iterable[Record],
        *,
        input_name: str,
        checkpoint_file: CheckpointFile | None = None,
        resume: bool = False,
    ) -> ImportSummary:
        """Import `records`; resume from `checkpoint_file` if asked and present."""
        if self.chunk_size < 1:
            raise InvalidInputError(f"must be >= 1, got {self.chunk_size}", field="chunk_size")
        state = Checkpoint(input=input_name, chunk_size=self.chunk_size)
        previous = checkpoint_file.load() if (resume and checkpoint_file) else None
        hasher = hashlib.sha256()
        iterator = iter(records)
        if previous is not None:
            if previous.chunk_size != self.chunk_size:
                raise ImportAbortedError(
                    f"the checkpoint was written with chunk size {previous.chunk_size}, "
                    f"not {self.chunk_size}; pass --chunk-size {previous.chunk_size}",
                    field="chunk_size",
                )
            self._skip(iterator, previous, hasher)
            state = previous
            state.input = input_name
            state.summary.resumed_after = previous.records_done
            state.summary.complete = False
            state.summary.stopped = None
        summary = state.summary
        for chunk in chunked(iterator, self.chunk_size):
            index = state.chunks_done
            try:
                rejection = self._send(chunk, index, summary, state.chunk_key(index))
            except StoreError as exc:
                summary.stopped = f"chunk {index}: {type(exc).__name__}: {exc}"
                if isinstance(exc, StoreUnavailableError):
                    summary.stopped += (" (applied at most once; --resume re-sends it with "
                                        "the same key and learns what it did)")
                self._save(checkpoint_file, state)
                raise
            if rejection is not None and self.strict:
                # Not done: the checkpoint stays before this chunk, so a resume re-sends it.
                self._save(checkpoint_file, state)
                summary.record_rejection(rejection)
                summary.stopped = f"chunk {index} rejected (strict)"
                return summary
            if rejection is not None:
                summary.record_rejection(rejection)
            for record in chunk:
                hasher.update(record.raw)
            state.records_done += len(chunk)
            state.chunks_done += 1
            state.sha256 = hasher.hexdigest()
            summary.records = state.records_done
            summary.chunks = state.chunks_done
            self._save(checkpoint_file, state)
            if self.on_chunk is not None:
                self.on_chunk(len(chunk), sum(len(r.raw) for r in chunk))
        summary.complete = True
        self._save(checkpoint_file, state)
        return summary

    def _skip(self, iterator: Iterator[Record], previous: Checkpoint, hasher: Any) -> None:
        skipped = 0
        skipped_bytes = 0
        while skipped < previous.records_done:
            record = next(iterator, None)
            if record is None:
                break
            hasher.update(record.raw)
            skipped += 1
            skipped_bytes += len(record.raw)
        if skipped < previous.records_done or hasher.hexdigest() != previous.sha256:
            raise ImportAbortedError(
                f"the input differs from the one the checkpoint was written for "
                f"(its first {previous.records_done} records do not match); "
                "start over without --resume",
                field="checkpoint",
            )
        if self.on_chunk is not None and skipped:
            self.on_chunk(skipped, skipped_bytes)

    def _send(self, chunk: list[Record], index: int, summary: ImportSummary,
              key: str) -> Rejection | None:
        """Store one chunk and count its outcomes; or say why it was rejected."""
        labels: list[Label] = []
        reasons: list[str] = []
        invalid = 0
        for record in chunk:
            try:
                labels.append(parse_label(record))
            except InvalidInputError as exc:
                invalid += 1
                if invalid <= MAX_REASONS_PER_CHUNK:
                    reasons.append(f"{_where(record)}: {exc}")
        if invalid > MAX_REASONS_PER_CHUNK:
            reasons.append(f"... and {invalid - MAX_REASONS_PER_CHUNK} more invalid records")
        if reasons:
            return _rejection(chunk, index, reasons)
        try:
            results = self._put_with_retries(labels, key)
        except StoreResponseError as exc:
            if exc.status not in _REJECT_STATUSES:
                raise
            detail = exc.detail if isinstance(exc.detail, dict) else {}
            if exc.status == 413 and detail.get("field") in ("labels", "body"):
                # The chunk itself is too big for this store: every chunk would be refused.
                raise ImportAbortedError(
                    f"the store refuses chunks of {len(chunk)} labels "
                    f"({detail.get('message', exc)}); use a smaller --chunk-size",
                    field="chunk_size",
                ) from exc
            reasons.append(_store_reason(exc, chunk))
            return _rejection(chunk, index, reasons)
        if any(getattr(result, "replayed", False) for result in results):
            summary.recovered += 1
        for result in results:
            outcome = str(getattr(result.outcome, "value", result.outcome))
            if outcome == "written":
                summary.written += 1
            elif outcome == "pending":
                summary.pending += 1
            else:
                summary.noop += 1
        return None

    def _put_with_retries(self, labels: list[Label], key: str) -> Sequence[WriteResultLike]:
        attempt = 0
        while True:
            try:
                return self.sink.put(labels, idempotency_key=key)
            except StoreUnavailableError:
                if attempt >= self.retries:
                    raise
            except StoreResponseError as exc:
                if exc.status not in _RETRY_STATUSES or attempt >= self.retries:
                    raise
            # Re-sending is safe: with the same key the store applies the chunk at most once.
            self.sleep(min(self.backoff * (2**attempt), 10.0))
            attempt += 1

    @staticmethod
    def _save(checkpoint_file: CheckpointFile | None, state: Checkpoint) -> None:
        if checkpoint_file is not None:
            checkpoint_file.save(state)


def _where(record: Record) -> str:
    return f"{'record' if record.value is not None else 'line'} {record.position}"


def _rejection(chunk: list[Record], index: int, reasons: list[str]) -> Rejection:
    return Rejection(chunk=index, first=chunk[0].position, last=chunk[-1].position,
                     labels=len(chunk), reasons=reasons)


def _store_reason(exc: StoreResponseError, chunk: list[Record]) -> str:
    detail = exc.detail if isinstance(exc.detail, dict) else {"message": str(exc.detail)}
    message = str(detail.get("message") or detail.get("error") or exc)
    field_name = detail.get("field")
    index = detail.get("index")
    where = "store"
    if isinstance(index, int) and 0 <= index < len(chunk):
        where = _where(chunk[index])
    text = f"{field_name}: {message}" if field_name else message
    return f"{where}: {text} (store answered {exc.status})"


def format_summary(summary: ImportSummary, *, input_name: str, max_reasons: int = 20) -> str:
    """The human summary printed at the end of an import."""
    lines = [f"import of {input_name}: {'complete' if summary.complete else 'NOT complete'}"]
    if summary.resumed_after:
        lines.append(f"  resumed after:  {summary.resumed_after} records")
    lines += [
        f"  records:        {summary.records} in {summary.chunks} chunks",
        f"  written:        {summary.written}",
        f"  no-op:          {summary.noop}",
        f"  pending review: {summary.pending}",
        f"  rejected:       {summary.rejected} in {summary.rejected_chunks} chunks",
    ]
    if summary.recovered:
        lines.append(f"  recovered:      {summary.recovered} chunks applied by an attempt whose "
                     "answer was lost (counted once, as that attempt applied them)")
    shown = 0
    for rejection in summary.rejections:
        lines.append(f"    chunk {rejection.chunk} (records at {rejection.first}..{rejection.last}, "
                     f"{rejection.labels} labels not stored):")
        for reason in rejection.reasons:
            if shown >= max_reasons:
                break
            lines.append(f"      {reason}")
            shown += 1
    total = sum(len(r.reasons) for r in summary.rejections)
    if total > shown:
        lines.append(f"      ... and {total - shown} more reasons (see the checkpoint file)")
    if summary.stopped:
        lines.append(f"  stopped:        {summary.stopped}")
    return "\n".join(lines)
