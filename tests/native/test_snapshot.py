"""Snapshot format v1: exact bytes, round trips, and rejection of anything damaged."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from enforce_sdk import SnapshotError
from enforce_sdk.native.binding import crc32c
from enforce_sdk.native.bloom import SNAPSHOT_VERSION, BloomFilter

HEADER = struct.Struct("<8sHHIQQIIQQII")  # the layout docs/native.md gives, byte by byte


@pytest.fixture(scope="module")
def snapshot() -> bytes:
    bloom = BloomFilter.for_capacity(2_000, 0.01, seed=77)
    bloom.add_many([f"pin:{i}" for i in range(2_000)])
    bloom.seq = 123_456_789
    return bloom.to_bytes()


def _reseal(data: bytearray) -> bytes:
    """Recompute both checksums, to reach the checks that come after them."""
    struct.pack_into("<I", data, 56, crc32c(bytes(data[64:])))
    struct.pack_into("<I", data, 60, crc32c(bytes(data[:60])))
    return bytes(data)


def test_crc32c_known_answer() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(b"6789", crc32c(b"12345")) == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"123456789", portable=True) == 0xE3069283


def test_hardware_and_portable_crc32c_agree() -> None:
    rng = random.Random(4)
    for n in [*range(40), 1000, 4097, 65_536 + 3]:
        data = rng.randbytes(n)
        start = rng.getrandbits(32)
        assert crc32c(data, start) == crc32c(data, start, portable=True), n


def test_header_layout_byte_by_byte(snapshot: bytes) -> None:
    bloom = BloomFilter.from_bytes(snapshot)
    fields = HEADER.unpack_from(snapshot)
    assert HEADER.size == 64
    magic, version, header_size, hash_id, seed, blocks, block_bits, k, keys, seq, body, head = (
        fields
    )
    assert magic == b"ENFBLOOM"
    assert (version, header_size, hash_id) == (SNAPSHOT_VERSION, 64, 1)
    assert (seed, blocks, block_bits, k) == (77, bloom.block_count, 512, bloom.k)
    assert (keys, seq) == (bloom.key_count, 123_456_789)
    assert len(snapshot) == 64 + blocks * 64
    assert body == crc32c(snapshot[64:])
    assert head == crc32c(snapshot[:60])


def test_round_trip_bytes_and_file(snapshot: bytes, tmp_path: Path) -> None:
    bloom = BloomFilter.from_bytes(snapshot)
    assert bloom.to_bytes() == snapshot
    assert bloom.seq == 123_456_789 and bloom.seed == 77
    assert bloom.contains_many([f"pin:{i}" for i in range(2_000)]).all()
    path = tmp_path / "bloom.snap"
    bloom.save(path)
    assert path.read_bytes() == snapshot
    loaded = BloomFilter.load(path)
    assert loaded.to_bytes() == snapshot
    assert BloomFilter.from_bytes(bytearray(snapshot)).to_bytes() == snapshot
    assert BloomFilter.from_bytes(memoryview(snapshot)).to_bytes() == snapshot
    assert [p.name for p in tmp_path.iterdir()] == ["bloom.snap"]  # no temp file left


def test_pickle_goes_through_the_snapshot(snapshot: bytes) -> None:
    import pickle

    bloom = BloomFilter.from_bytes(snapshot)
    again = pickle.loads(pickle.dumps(bloom))
    assert isinstance(again, BloomFilter) and again.to_bytes() == snapshot


def test_truncated_at_every_header_offset_and_many_body_offsets(snapshot: bytes) -> None:
    offsets = list(range(0, 80)) + random.Random(1).sample(range(80, len(snapshot)), 200)
    offsets.append(len(snapshot) - 1)
    for cut in offsets:
        with pytest.raises(SnapshotError, match="rejected: truncated"):
            BloomFilter.from_bytes(snapshot[:cut])


def test_every_header_bit_flip_is_rejected(snapshot: bytes) -> None:
    for bit in range(64 * 8):
        data = bytearray(snapshot)
        data[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(SnapshotError, match="bloom snapshot \\(bytes\\) rejected: "):
            BloomFilter.from_bytes(bytes(data))


def test_body_bit_flips_are_rejected(snapshot: bytes) -> None:
    rng = random.Random(2)
    last_bit = len(snapshot) * 8 - 1
    for bit in [*rng.sample(range(64 * 8, len(snapshot) * 8), 300), last_bit]:
        data = bytearray(snapshot)
        data[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(SnapshotError, match="rejected: corrupt body \\(checksum mismatch\\)"):
            BloomFilter.from_bytes(bytes(data))


def test_foreign_files_are_rejected() -> None:
    with pytest.raises(SnapshotError, match="not a bloom snapshot \\(wrong magic\\)"):
        BloomFilter.from_bytes(b"PK\x03\x04" + bytes(200))
    with pytest.raises(SnapshotError, match="not a bloom snapshot"):
        BloomFilter.from_bytes(b'{"entity": "pin:1"}\n')
    with pytest.raises(SnapshotError, match="not a bloom snapshot"):
        BloomFilter.from_bytes(b"pin:1\n")
    with pytest.raises(SnapshotError, match="truncated"):
        BloomFilter.from_bytes(b"")
    with pytest.raises(SnapshotError, match="truncated"):
        BloomFilter.from_bytes(b"ENFB")


def test_future_version_is_rejected_clearly(snapshot: bytes) -> None:
    data = bytearray(snapshot)
    struct.pack_into("<H", data, 8, SNAPSHOT_VERSION + 1)
    with pytest.raises(SnapshotError, match=r"newer than this build supports.*reads format vers"):
        BloomFilter.from_bytes(_reseal(data))
    struct.pack_into("<H", data, 8, 0)
    with pytest.raises(SnapshotError, match="corrupt header"):
        BloomFilter.from_bytes(_reseal(data))


def test_a_flipped_version_bit_is_corruption_not_a_newer_version(snapshot: bytes) -> None:
    """The header CRC is checked before the version is believed."""
    for bit in range(16):  # the u16 version field, bytes 8-9 (raises it, or makes it 0)
        data = bytearray(snapshot)
        data[8 + bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(SnapshotError, match=r"rejected: corrupt header \(checksum mismatch\)$"):
            BloomFilter.from_bytes(bytes(data))
    for bit in range(16):  # likewise the header size field of a version 1 snapshot
        data = bytearray(snapshot)
        data[10 + bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(SnapshotError, match=r"corrupt header \(checksum mismatch\)$"):
            BloomFilter.from_bytes(bytes(data))


def _future(snapshot: bytes, header_size: int) -> bytearray:
    """A well-formed snapshot of the next version whose header is `header_size` bytes long:
    bytes 0..11 as always, its own fields, then the CRC32C of the header before it."""
    head = bytearray(snapshot[:60]) + bytes(header_size - 64)
    struct.pack_into("<HH", head, 8, SNAPSHOT_VERSION + 1, header_size)
    return head + struct.pack("<I", crc32c(bytes(head))) + snapshot[64:]


@pytest.mark.parametrize("header_size", [64, 72, 128, 4096])
def test_a_well_formed_future_version_is_reported_as_newer(
    snapshot: bytes, header_size: int
) -> None:
    newer = r"rejected: format version is newer than this build supports \(this build reads"
    data = _future(snapshot, header_size)
    with pytest.raises(SnapshotError, match=newer):
        BloomFilter.from_bytes(bytes(data))
    with pytest.raises(SnapshotError, match=newer):  # its body is not ours to check
        BloomFilter.from_bytes(bytes(data[:header_size]))
    for offset in (12, header_size - 5, header_size - 1):  # damage inside its header
        bad = bytearray(data)
        bad[offset] ^= 0x10
        with pytest.raises(SnapshotError, match=r"corrupt header \(checksum mismatch\)"):
            BloomFilter.from_bytes(bytes(bad))
    with pytest.raises(SnapshotError, match="rejected: truncated"):
        BloomFilter.from_bytes(bytes(data[: header_size - 1]))


def test_a_future_header_shorter_than_version_1_is_corrupt(snapshot: bytes) -> None:
    data = bytearray(snapshot)
    struct.pack_into("<HH", data, 8, SNAPSHOT_VERSION + 1, 32)
    struct.pack_into("<I", data, 28, crc32c(bytes(data[:28])))  # even with a CRC at 28
    with pytest.raises(SnapshotError, match=r"corrupt header \(invalid version or header size\)"):
        BloomFilter.from_bytes(bytes(data))


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "match"),
    [
        (12, "<I", 2, "unknown hash id"),
        (24, "<Q", 0, "parameters out of range"),
        (32, "<I", 256, "parameters out of range"),
        (36, "<I", 0, "parameters out of range"),
        (36, "<I", 17, "parameters out of range"),
        (24, "<Q", 2**62, "parameters out of range"),
        (10, "<H", 128, "corrupt header"),
    ],
)
def test_resealed_bad_parameters_are_rejected(
    snapshot: bytes, offset: int, fmt: str, value: int, match: str
) -> None:
    data = bytearray(snapshot)
    struct.pack_into(fmt, data, offset, value)
    with pytest.raises(SnapshotError, match=match):
        BloomFilter.from_bytes(_reseal(data))


def test_block_count_must_match_the_length(snapshot: bytes) -> None:
    data = bytearray(snapshot)
    blocks = struct.unpack_from("<Q", data, 24)[0]
    struct.pack_into("<Q", data, 24, blocks + 1)
    with pytest.raises(SnapshotError, match="truncated"):
        BloomFilter.from_bytes(_reseal(data))
    with pytest.raises(SnapshotError, match="trailing bytes after the body"):
        BloomFilter.from_bytes(snapshot + b"\0")


def test_load_errors_name_the_file(tmp_path: Path, snapshot: bytes) -> None:
    missing = tmp_path / "missing.snap"
    with pytest.raises(SnapshotError, match=r"cannot read bloom snapshot .*missing\.snap"):
        BloomFilter.load(missing)
    empty = tmp_path / "empty.snap"
    empty.write_bytes(b"")
    with pytest.raises(SnapshotError, match=r"empty\.snap' rejected: truncated"):
        BloomFilter.load(empty)
    cut = tmp_path / "cut.snap"
    cut.write_bytes(snapshot[:-10])
    with pytest.raises(SnapshotError, match=r"cut\.snap' rejected: truncated"):
        BloomFilter.load(cut)
    with pytest.raises(SnapshotError, match="cannot read"):
        BloomFilter.load(tmp_path)  # a directory


def test_from_bytes_refuses_non_bytes() -> None:
    from enforce_sdk import InvalidInputError

    with pytest.raises(InvalidInputError, match="snapshot: must be bytes, got str"):
        BloomFilter.from_bytes("ENFBLOOM")  # type: ignore[arg-type]


def test_failed_save_leaves_the_old_file(tmp_path: Path, snapshot: bytes) -> None:
    path = tmp_path / "bloom.snap"
    path.write_bytes(b"old")
    bloom = BloomFilter.from_bytes(snapshot)
    with pytest.raises(OSError):
        bloom.save(tmp_path / "no-such-dir" / "bloom.snap")
    assert path.read_bytes() == b"old"
