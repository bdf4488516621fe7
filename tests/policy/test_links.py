"""Link values to keys: a domain link is read as a browser reads it, whatever its spelling."""

from __future__ import annotations

import pytest

from enforce_sdk import EntityKeyError, InvalidInputError
from enforce_sdk.policy.links import related_key


@pytest.mark.parametrize("value", [
    "https://evil.com/x", "https:\\\\evil.com", "HTTPS:evil.com", "ftp:evil.com", "evil.com",
    "evil.com:443", "www.evil.com/deal", "//cdn.evil.com/a", "domain:evil.com",
    "https://evil.com\\@innocent.org/x",  # a browser opens evil.com: the backslash ends the host
])
def test_every_spelling_of_a_domain_link_reaches_the_domains_key(value: str) -> None:
    assert related_key("domain", value) == "domain:evil.com"


def test_ip_links_and_keys() -> None:
    assert related_key("domain", "2001:db8::1") == related_key("domain", "http://[2001:db8::1]/")
    assert related_key("domain", "https://0x7f000001/") == "domain:127.0.0.1"


@pytest.mark.parametrize(("kind", "value"), [
    ("domain", "javascript:alert(1)"), ("domain", "https://exa mple.com/"), ("domain", ""),
    ("creator", "pin:5"), ("image", "user:1"), ("domain", "https://example.com:99999/"),
])
def test_a_bad_link_value_is_an_entity_key_error(kind: str, value: str) -> None:
    with pytest.raises(EntityKeyError):
        related_key(kind, value)


def test_a_link_value_that_is_not_a_string_is_misuse() -> None:
    with pytest.raises(InvalidInputError) as err:
        related_key("creator", 42)  # type: ignore[arg-type]
    assert not isinstance(err.value, EntityKeyError)


def test_ids_and_keys_of_the_links_kind() -> None:
    assert related_key("creator", "42") == "user:42"
    assert related_key("creator", "user:42") == "user:42"
    assert related_key("image", "ABCDEF") == "image:abcdef"
