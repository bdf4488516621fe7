"""`bloom build` and `bloom info` through click's CliRunner on the group itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from enforce_sdk import Enforcement, Label, Source, SourceType
from enforce_sdk.cli._bloom import bloom
from enforce_sdk.native.bloom import BloomFilter


def _label(entity: str) -> Label:
    return Label(
        entity=entity,
        source=Source(system="review", type=SourceType.HUMAN, name="queue"),
        enforcement=Enforcement.BLOCK,
        reason="spam",
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def test_build_from_jsonl_labels_then_info(tmp_path: Path) -> None:
    export = tmp_path / "labels.jsonl"
    entities = [f"pin:{i}" for i in range(3000)] + ["domain:www.Example.COM"]
    lines = [json.dumps(_label(e).to_dict()) for e in entities]
    lines.append(json.dumps(_label("pin:0").to_dict()))  # a duplicate entity
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "bloom.snap"
    runner = CliRunner()
    result = runner.invoke(
        bloom, ["build", "--from", str(export), "--out", str(out), "--fp", "0.001", "--seq", "42"]
    )
    assert result.exit_code == 0, result.output
    assert "3001 keys" in result.output and "seq=42" in result.output
    loaded = BloomFilter.load(out)
    assert loaded.seq == 42 and loaded.key_count <= 3001
    assert loaded.contains_many([f"pin:{i}" for i in range(3000)]).all()
    assert "domain:example.com" in loaded  # canonical form went in
    assert loaded.model_fp(3001) <= 0.001

    result = runner.invoke(bloom, ["info", str(out)])
    assert result.exit_code == 0, result.output
    text = result.output
    for expected in (
        "format version    1",
        "sig64-v1 (id 1)",
        "sequence          42",
        f"keys              {loaded.key_count}",
        "bytes per key",
        "estimated fp",
    ):
        assert expected in text, text
    result = runner.invoke(bloom, ["info", "--json", str(out)])
    info = json.loads(result.output)
    assert info["seq"] == 42 and info["size_bytes"] == loaded.size_bytes
    assert info["file_bytes"] == out.stat().st_size and info["hash_name"] == "sig64-v1"


def test_build_from_plain_keys_with_blank_and_comment_lines(tmp_path: Path) -> None:
    export = tmp_path / "keys.txt"
    export.write_text("# blocked pins\npin:1\n\n  user:42  \nIMAGE:ABCDEF\n", encoding="utf-8")
    out = tmp_path / "b.snap"
    result = CliRunner().invoke(bloom, ["build", "--from", str(export), "--out", str(out)])
    assert result.exit_code == 0, result.output
    loaded = BloomFilter.load(out)
    assert all(k in loaded for k in ["pin:1", "user:42", "image:abcdef"])
    assert loaded.seq == 0


def test_bad_lines_name_the_line_and_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "b.snap"
    runner = CliRunner()
    for content, message in [
        ("pin:1\nnot a key\n", "keys.txt:2: "),
        ('pin:1\n{"entity": "pin:2"\n', "keys.txt:2: not valid JSON"),
        ('{"entity": "pin:2"}\n', "keys.txt:1: source"),
    ]:
        export = tmp_path / "keys.txt"
        export.write_text(content, encoding="utf-8")
        result = runner.invoke(bloom, ["build", "--from", str(export), "--out", str(out)])
        assert result.exit_code == 1, result.output
        assert message in result.output
        assert not out.exists()


def test_bad_options_and_files(tmp_path: Path) -> None:
    runner = CliRunner()
    export = tmp_path / "keys.txt"
    export.write_text("pin:1\n", encoding="utf-8")
    out = tmp_path / "b.snap"
    result = runner.invoke(
        bloom, ["build", "--from", str(export), "--out", str(out), "--fp", "1.5"]
    )
    assert result.exit_code == 2 and "fp_rate: must be in (0, 1)" in result.output
    result = runner.invoke(bloom, ["build", "--from", str(tmp_path / "nope"), "--out", str(out)])
    assert result.exit_code == 2 and "nope" in result.output
    result = runner.invoke(bloom, ["info", str(export)])
    assert result.exit_code == 2 and "not a bloom snapshot (wrong magic)" in result.output
    result = runner.invoke(bloom, ["info", str(tmp_path / "missing.snap")])
    assert result.exit_code == 2 and "cannot read bloom snapshot" in result.output
