"""A pure-Python reference of sig64 v1, written from docs/native.md, to check the C code."""

from __future__ import annotations

MASK = (1 << 64) - 1
K0 = 0x6A09E667F3BCC908
K1 = 0xBB67AE8584CAA73B
K2 = 0x3C6EF372FE94F82B
K3 = 0xA54FF53A5F1D36F1
K4 = 0x510E527FADE682D1
K5 = 0x9B05688C2B3E6C1F


def fold(a: int, b: int) -> int:
    """128-bit product of two 64-bit words, xor of its halves."""
    r = (a & MASK) * (b & MASK)
    return (r ^ (r >> 64)) & MASK


def _le(data: bytes, start: int, size: int) -> int:
    return int.from_bytes(data[start : start + size], "little")


def sig64(data: bytes, seed: int = 0) -> int:
    n = len(data)
    s = (seed ^ K0) & MASK
    if n <= 16:
        if n >= 8:
            a, b = _le(data, 0, 8), _le(data, n - 8, 8)
        elif n >= 4:
            a, b = _le(data, 0, 4), _le(data, n - 4, 4)
        elif n > 0:
            a, b = (data[0] << 16) | (data[n >> 1] << 8) | data[n - 1], 0
        else:
            a = b = 0
    else:
        pos = 0
        while n - pos > 16:
            s = fold(_le(data, pos, 8) ^ K1, _le(data, pos + 8, 8) ^ s)
            pos += 16
        a, b = _le(data, n - 16, 8), _le(data, n - 8, 8)
    s = fold(a ^ K2, b ^ s)
    return fold(s ^ K3, s ^ K4 ^ n)


def block_and_positions(sig: int, blocks: int, k: int) -> tuple[int, list[int]]:
    """Block index and the k bit positions (0..511) a signature maps to."""
    block = (sig * blocks) >> 64
    g = fold(sig, K5)
    positions = []
    slot = 0
    for _ in range(k):
        if slot == 7:
            g = fold(g, K5)
            slot = 0
        positions.append((g >> (9 * slot)) & 511)
        slot += 1
    return block, positions
