"""The import engine without click or a server: chunks, rejections, checkpoints, retries."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgpack
import pytest

from enforce_sdk import Label, StoreResponseError, StoreUnavailableError
from enforce_sdk.cli._import import CheckpointFile, LabelImporter, format_summary
from enforce_sdk.cli._import_input import ImportAbortedError, detect_format, read_records
from enforce_sdk.demo.sample import sample_labels


@dataclass
class _Result:
    outcome: str
    replayed: bool = False


class FakeSink:
    """Stores labels like the store does (identical label -> noop); can fail on cue."""

    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], Label] = {}
        self.calls = 0
        self.fail_at: dict[int, Exception] = {}  # call number -> error to raise
        self.lose_answer_at: dict[int, Exception] = {}  # call -> error raised *after* applying
        self.keys: list[str | None] = []  # the idempotency key of every call
        self.outcomes: dict[str, list[str]] = {}  # key -> first outcome, as the store keeps it

    def put(self, labels: Sequence[Label], *,
            idempotency_key: str | None = None) -> list[_Result]:
        self.calls += 1
        self.keys.append(idempotency_key)
        error = self.fail_at.pop(self.calls, None)
        if error is not None:
            raise error
        if idempotency_key in self.outcomes:
            return [_Result(o, replayed=True) for o in self.outcomes[idempotency_key]]
        out = []
        for label in labels:
            same = self.stored.get(label.key) == label
            self.stored[label.key] = label
            out.append(_Result("noop" if same else "written"))
        if idempotency_key is not None:
            self.outcomes[idempotency_key] = [r.outcome for r in out]
        lost = self.lose_answer_at.pop(self.calls, None)
        if lost is not None:
            raise lost
        return out


def _jsonl(labels: list[Label], bad: dict[int, str] | None = None) -> bytes:
    lines = [json.dumps(lb.to_dict()) for lb in labels]
    for index, text in (bad or {}).items():
        lines[index] = text
    return ("\n".join(lines) + "\n").encode()


def _stream(data: bytes) -> io.BufferedReader:
    return io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]


LABELS = list(sample_labels(95, seed=11))


def test_detect_format() -> None:
    assert detect_format(b'  {"entity"') == "jsonl"
    assert detect_format(msgpack.packb({"a": 1})) == "msgpack"
    assert detect_format(b"") == "jsonl"
    with pytest.raises(ImportAbortedError, match="first byte"):
        detect_format(b"[1,2]")


def test_jsonl_and_msgpack_give_the_same_labels() -> None:
    packed = b"".join(msgpack.packb(lb.to_wire(), datetime=True) for lb in LABELS)
    sink_a, sink_b = FakeSink(), FakeSink()
    LabelImporter(sink_a, chunk_size=10).run(read_records(_stream(_jsonl(LABELS))), input_name="a")
    LabelImporter(sink_b, chunk_size=10).run(read_records(_stream(packed)), input_name="b")
    assert sink_a.stored == sink_b.stored == {lb.key: lb for lb in LABELS}


def test_chunks_and_summary_counts() -> None:
    sink = FakeSink()
    summary = LabelImporter(sink, chunk_size=10).run(
        read_records(_stream(_jsonl(LABELS))), input_name="x")
    assert (summary.records, summary.chunks, summary.written) == (95, 10, 95)
    assert sink.calls == 10 and summary.complete and summary.exit_code == 0
    again = LabelImporter(sink, chunk_size=10).run(
        read_records(_stream(_jsonl(LABELS))), input_name="x")
    assert (again.written, again.noop) == (0, 95)


def test_bad_line_rejects_its_whole_chunk_and_import_goes_on() -> None:
    data = _jsonl(LABELS, bad={13: "{not json", 17: json.dumps({"entity": "pin:1"})})
    sink = FakeSink()
    summary = LabelImporter(sink, chunk_size=10).run(read_records(_stream(data)), input_name="x")
    assert summary.rejected_chunks == 1 and summary.rejected == 10
    assert summary.written == 85 and summary.exit_code == 1
    reasons = summary.rejections[0].reasons
    assert reasons[0].startswith("line 14: ") and "not valid JSON" in reasons[0]
    assert reasons[1].startswith("line 18: ") and "source" in reasons[1]
    assert not any(lb.key in sink.stored for lb in LABELS[10:20])  # nothing half-way
    assert all(lb.key in sink.stored for lb in LABELS[20:])
    text = format_summary(summary, input_name="x")
    assert "rejected:       10 in 1 chunks" in text and "line 14" in text


def test_strict_stops_at_first_rejected_chunk() -> None:
    data = _jsonl(LABELS, bad={25: "[]"})
    sink = FakeSink()
    summary = LabelImporter(sink, chunk_size=10, strict=True).run(
        read_records(_stream(data)), input_name="x")
    assert summary.exit_code == 1 and not summary.complete
    assert len(sink.stored) == 20 and summary.records == 20


def test_store_rejection_names_the_line() -> None:
    sink = FakeSink()
    detail = {"error": "invalid_label", "message": "too big", "field": "metadata", "index": 3}
    sink.fail_at[2] = StoreResponseError(422, detail)
    summary = LabelImporter(sink, chunk_size=10).run(
        read_records(_stream(_jsonl(LABELS))), input_name="x")
    assert summary.rejected_chunks == 1
    assert summary.rejections[0].reasons == [
        "line 14: metadata: too big (store answered 422)"]


def test_retries_unavailable_then_succeeds_without_real_sleep() -> None:
    sink = FakeSink()
    sink.fail_at[1] = StoreUnavailableError("down")
    sink.fail_at[2] = StoreResponseError(503, {"message": "not ready"})
    slept: list[float] = []
    summary = LabelImporter(sink, chunk_size=50, retries=2, sleep=slept.append).run(
        read_records(_stream(_jsonl(LABELS))), input_name="x")
    assert summary.written == 95 and slept == [0.5, 1.0]


def test_gives_up_after_retries_and_checkpoint_keeps_acknowledged(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.fail_at[4] = StoreUnavailableError("gone")
    checkpoint = CheckpointFile(tmp_path / "cp.json")
    importer = LabelImporter(sink, chunk_size=10, retries=0, sleep=lambda s: None)
    with pytest.raises(StoreUnavailableError):
        importer.run(read_records(_stream(_jsonl(LABELS))), input_name="x",
                     checkpoint_file=checkpoint)
    state = checkpoint.load()
    assert state is not None and (state.records_done, state.chunks_done) == (30, 3)
    assert state.summary.stopped and "gone" in state.summary.stopped


def test_resume_continues_after_last_acknowledged_chunk(tmp_path: Path) -> None:
    data = _jsonl(LABELS)
    sink = FakeSink()
    sink.fail_at[5] = StoreUnavailableError("gone")
    checkpoint = CheckpointFile(tmp_path / "cp.json")
    with pytest.raises(StoreUnavailableError):
        LabelImporter(sink, chunk_size=10, retries=0).run(
            read_records(_stream(data)), input_name="x", checkpoint_file=checkpoint)
    calls_before = sink.calls
    summary = LabelImporter(sink, chunk_size=10).run(
        read_records(_stream(data)), input_name="x", checkpoint_file=checkpoint, resume=True)
    assert sink.calls - calls_before == 6  # chunks 4..9 only
    assert summary.resumed_after == 40 and summary.written == 95 and summary.noop == 0
    assert summary.complete and sink.stored == {lb.key: lb for lb in LABELS}


def test_resume_refuses_a_different_input(tmp_path: Path) -> None:
    checkpoint = CheckpointFile(tmp_path / "cp.json")
    LabelImporter(FakeSink(), chunk_size=10).run(
        read_records(_stream(_jsonl(LABELS[:30]))), input_name="x", checkpoint_file=checkpoint)
    other = list(sample_labels(95, seed=12))
    with pytest.raises(ImportAbortedError, match="differs"):
        LabelImporter(FakeSink(), chunk_size=10).run(
            read_records(_stream(_jsonl(other))), input_name="x", checkpoint_file=checkpoint,
            resume=True)
    with pytest.raises(ImportAbortedError, match="chunk size 10"):
        LabelImporter(FakeSink(), chunk_size=7).run(
            read_records(_stream(_jsonl(LABELS))), input_name="x", checkpoint_file=checkpoint,
            resume=True)


def test_resume_after_strict_stop_resends_the_fixed_chunk(tmp_path: Path) -> None:
    checkpoint = CheckpointFile(tmp_path / "cp.json")
    sink = FakeSink()
    broken = _jsonl(LABELS, bad={42: "{}"})
    first = LabelImporter(sink, chunk_size=10, strict=True).run(
        read_records(_stream(broken)), input_name="x", checkpoint_file=checkpoint)
    assert first.records == 40
    second = LabelImporter(sink, chunk_size=10, strict=True).run(
        read_records(_stream(_jsonl(LABELS))), input_name="x", checkpoint_file=checkpoint,
        resume=True)
    assert second.complete and second.exit_code == 0
    assert sink.stored == {lb.key: lb for lb in LABELS}


def test_msgpack_truncated_and_garbage() -> None:
    packed = b"".join(msgpack.packb(lb.to_wire(), datetime=True) for lb in LABELS[:3])
    with pytest.raises(ImportAbortedError, match="trailing bytes"):
        list(read_records(_stream(packed[:-5])))
    records = list(read_records(_stream(packed + msgpack.packb([1, 2]))))
    assert len(records) == 4
    summary = LabelImporter(FakeSink(), chunk_size=2).run(iter(records), input_name="x")
    assert summary.rejections[0].chunk == 1
    assert summary.rejections[0].reasons == ["record 4: label: must be an object, got list"]


def test_schema_field_in_line_is_accepted_only_for_this_version() -> None:
    line = dict(LABELS[0].to_dict(), schema=1)
    future = dict(LABELS[1].to_dict(), schema=2)
    data = (json.dumps(line) + "\n" + json.dumps(future) + "\n").encode()
    summary = LabelImporter(FakeSink(), chunk_size=1).run(read_records(_stream(data)),
                                                         input_name="x")
    assert summary.written == 1 and summary.rejected == 1
    assert "schema" in summary.rejections[0].reasons[0]


@pytest.mark.parametrize("schema", [True, 1.0])
def test_an_import_line_with_a_schema_that_is_not_the_integer_1_is_refused(schema: object) -> None:
    from enforce_sdk import InvalidInputError
    from enforce_sdk.cli._import_input import Record, parse_label

    line = dict(sample_labels(1, seed=3).__next__().to_dict(), schema=schema)
    with pytest.raises(InvalidInputError, match="unsupported schema version"):
        parse_label(Record(1, json.dumps(line).encode()))


def test_every_chunk_has_its_own_key_and_a_retry_resends_it() -> None:
    sink = FakeSink()
    sink.fail_at[2] = StoreUnavailableError("down")
    LabelImporter(sink, chunk_size=50, retries=1, sleep=lambda s: None).run(
        read_records(_stream(_jsonl(LABELS))), input_name="x")
    first, failed, retry = sink.keys
    assert first is not None and failed is not None and first != failed
    assert retry == failed  # the re-send of chunk 1 carries chunk 1's key


def test_a_lost_answer_is_reported_as_what_the_first_attempt_did() -> None:
    sink = FakeSink()
    sink.lose_answer_at[1] = StoreResponseError(503, {"message": "applied, then failed"})
    summary = LabelImporter(sink, chunk_size=50, retries=2, sleep=lambda s: None).run(
        read_records(_stream(_jsonl(LABELS))), input_name="x")
    # Without the key the re-send would count the first chunk's 50 labels as no-ops.
    assert (summary.written, summary.noop, summary.recovered) == (95, 0, 1)
    assert "recovered:      1 chunks" in format_summary(summary, input_name="x")


def test_resume_resends_an_unanswered_chunk_with_its_key(tmp_path: Path) -> None:
    data = _jsonl(LABELS)
    sink = FakeSink()
    sink.lose_answer_at[3] = StoreUnavailableError("timed out")
    checkpoint = CheckpointFile(tmp_path / "cp.json")
    with pytest.raises(StoreUnavailableError):
        LabelImporter(sink, chunk_size=10, retries=0).run(
            read_records(_stream(data)), input_name="x", checkpoint_file=checkpoint)
    state = checkpoint.load()
    assert state is not None and "applied at most once" in (state.summary.stopped or "")
    unanswered = sink.keys[-1]
    summary = LabelImporter(sink, chunk_size=10).run(
        read_records(_stream(data)), input_name="x", checkpoint_file=checkpoint, resume=True)
    assert sink.keys[3] == unanswered  # chunk 2 again, under the key it was first sent with
    assert (summary.written, summary.noop, summary.recovered) == (95, 0, 1)
