"""Entity key canonicalisation: one canonical form, PSL-normalised domains, clear errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enforce_sdk import EntityKeyError, canonical_key, domain_key_from_url
from enforce_sdk.model.keys import pdq_hash_of_key


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("pin:1233211212", "pin:1233211212"),
        ("  PIN:42 ", "pin:42"),
        ("User : AbC", "user:AbC"),  # ids keep their case
        ("domain:WwW.Example.CO.uk", "domain:example.co.uk"),
        ("domain:shop.example.com.", "domain:example.com"),
        ("domain:a.b.blogspot.com", "domain:b.blogspot.com"),  # private PSL section
        ("domain:BÜCHER.de", "domain:xn--bcher-kva.de"),
        ("domain:192.168.0.1", "domain:192.168.0.1"),
        # DNS and browsers take a label starting with '-'; the key is the registrable domain
        ("domain:-cdn.example.com", "domain:example.com"),
        ("image:ABCDEF0123", "image:abcdef0123"),
    ],
)
def test_canonical_forms(raw: str, canonical: str) -> None:
    assert canonical_key(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("pin", "kind:id"),
        (":42", "kind"),
        ("9pin:1", "kind"),
        ("pin:", "id"),
        ("pin:a b", "id"),
        ("domain:co.uk", "public suffix"),
        ("domain:", "empty domain"),
        ("pin:" + "x" * 257, "id"),
        ("pin:\ud800", "lone surrogates"),
        ("domain:exa mple.com", "not a valid host name"),
        ("domain:ex\x00ample.com", "not a valid host name"),
        ("domain:example.com:8080", "no port"),
        ("domain:example.com/x?y=1", "not a valid host name"),
        ("domain:" + "a" * 64 + ".com", "not a valid host name"),
        ("pin:a\u0085b", "id"),  # C1 control (and Unicode whitespace)
        ("pin:a\u0090b", "U+0090 (Cc)"),  # C1 control
        ("pin:paypal\u202ecom", "U+202E (Cf)"),  # right-to-left override
        ("pin:a\u200bb", "U+200B (Cf)"),  # zero width space
        ("pin:\ufeffa", "U+FEFF (Cf)"),  # byte order mark
        ("pin:\u0378", "U+0378 (Cn)"),  # unassigned
    ],
)
def test_malformed_keys_name_the_problem(raw: str, fragment: str) -> None:
    with pytest.raises(EntityKeyError) as info:
        canonical_key(raw)
    assert fragment in str(info.value)
    assert info.value.field == "entity"


def test_non_string_key_is_rejected() -> None:
    with pytest.raises(EntityKeyError, match="must be a string"):
        canonical_key(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://www.Example.co.uk/path?q=1", "domain:example.co.uk"),
        ("http://user:pw@sub.example.com:8080/", "domain:example.com"),
        ("example.org/landing", "domain:example.org"),
    ],
)
def test_domain_key_from_url(url: str, key: str) -> None:
    assert domain_key_from_url(url) == key


def test_url_without_host_is_rejected() -> None:
    with pytest.raises(EntityKeyError, match="no host"):
        domain_key_from_url("file:///nohost")


def test_extra_slashes_do_not_hide_the_host() -> None:
    # A browser skips any slashes after a special scheme: https:///x opens host x.
    assert domain_key_from_url("https:///www.example.com/") == "domain:example.com"
    with pytest.raises(EntityKeyError, match="public suffix"):
        domain_key_from_url("https:///nohost")


@given(st.text(max_size=80))
def test_any_text_gives_a_canonical_key_or_a_clear_error(raw: str) -> None:
    try:
        key = canonical_key(raw)
    except EntityKeyError as exc:
        assert exc.field == "entity"
        return
    # canonical form is a fixed point
    assert canonical_key(key) == key
    kind, _, ident = key.partition(":")
    assert kind and ident and kind == kind.lower()


def test_an_oversized_key_is_refused_before_any_work_or_caching() -> None:
    """`"pin:1" + 1 MB of spaces` strips to a valid key: it must not be read, or cached."""
    from enforce_sdk.model import keys

    before = keys._canonical_slow.cache_info().currsize
    for i in range(1000):
        raw = f"pin:{i}" + " " * (1 << 20)
        with pytest.raises(EntityKeyError, match="over the limit of 1024") as info:
            canonical_key(raw)
        assert len(str(info.value)) < 200  # the key is not echoed back
    assert keys._canonical_slow.cache_info().currsize == before
    assert canonical_key(" pin:1 ") == "pin:1"  # whitespace around a key of normal size is fine


def test_ids_of_other_scripts_and_symbols_stay_valid() -> None:
    for raw in ("pin:café", "pin:日本語", "pin:😀", "board:ação-1"):
        assert canonical_key(raw) == raw


PDQ_HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (f"image:{PDQ_HEX}", PDQ_HEX),
        (f"image:{PDQ_HEX.upper()}", PDQ_HEX),
        (f" IMAGE:{PDQ_HEX} ", PDQ_HEX),
        (f"image:{PDQ_HEX[:-1]}", None),  # 63 hex: an opaque image id
        (f"image:{PDQ_HEX}0", None),  # 65 hex
        (f"image:{PDQ_HEX[:-1]}g", None),  # not hex
        ("image:9f86d081884c7d65", None),
        (f"pin:{PDQ_HEX}", None),
    ],
)
def test_pdq_image_keys_are_recognised(raw: str, expected: str | None) -> None:
    assert pdq_hash_of_key(raw) == expected
    if expected is not None:
        assert canonical_key(raw) == f"image:{expected}"


def test_pdq_hash_of_key_refuses_what_is_not_a_key() -> None:
    with pytest.raises(EntityKeyError):
        pdq_hash_of_key("no colon")
