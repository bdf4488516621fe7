"""Unit tests of the ZooKeeper layout: paths, the document codec, credentials and ACLs."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kazoo.exceptions import BadVersionError, ConnectionLoss, NoAuthError, RolledBackError
from kazoo.security import Permissions

from enforce_sdk._errors import (
    ConfigConflictError,
    ConfigError,
    ConfigPermissionError,
    ConfigSourceError,
    InvalidInputError,
)
from enforce_sdk.config.zk_document import decode_document, encode_document
from enforce_sdk.config.zk_layout import (
    ConfigLayout,
    config_acls,
    history_name,
    kazoo_errors,
    parse_credential,
    parse_history_name,
    raise_transaction_failure,
)


def test_layout_paths() -> None:
    layout = ConfigLayout("/enforce_sdk/prod")
    assert layout.config == "/enforce_sdk/prod/config"
    assert layout.history_node(42) == "/enforce_sdk/prod/history/v000000000042"


@pytest.mark.parametrize("root", ["", "relative", "/trailing/", "/a//b", "/spa ce"])
def test_layout_refuses_bad_roots(root: str) -> None:
    with pytest.raises(InvalidInputError, match="path"):
        ConfigLayout(root)


@given(st.integers(0, 10**12 - 1), st.integers(0, 10**12 - 1))
def test_history_names_sort_like_versions(a: int, b: int) -> None:
    assert (history_name(a) < history_name(b)) == (a < b)
    assert parse_history_name(history_name(a)) == a


def test_foreign_history_names_are_ignored() -> None:
    assert parse_history_name("lock-0001") is None
    assert parse_history_name("v12") is None


def test_document_round_trip_is_compact_and_sorted() -> None:
    data = encode_document({"b": 1, "a": {"z": "é", "y": [1, 2]}})
    assert data == '{"a":{"y":[1,2],"z":"é"},"b":1}'.encode()
    assert decode_document(data) == {"a": {"y": [1, 2], "z": "é"}, "b": 1}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (None, "does not exist"),
        (b"", "empty"),
        (b"{not json", "malformed JSON at line 1"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"a": "' + b"x" * 300 + b'"}', "over the 100-byte limit"),
    ],
)
def test_decode_names_the_problem(data: bytes | None, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        decode_document(data, max_bytes=100)


def test_encode_refuses_oversized_and_non_json() -> None:
    with pytest.raises(ConfigError, match="over the 50-byte limit"):
        encode_document({"a": "x" * 100}, max_bytes=50)
    with pytest.raises(ConfigError, match="JSON"):
        encode_document({"a": float("nan")})


def test_credentials() -> None:
    assert parse_credential("admin:s3cret:x") == ("admin", "s3cret:x")
    for bad in ["admin", ":pw", "admin:", "a b:c"]:
        with pytest.raises(InvalidInputError, match="user:password"):
            parse_credential(bad)


def test_acls_give_admin_everything_and_readers_read() -> None:
    world = config_acls("admin:pw")
    assert world[0].perms == Permissions.ALL and world[0].id.scheme == "digest"
    assert world[1].perms == Permissions.READ and world[1].id.id == "anyone"
    named = config_acls("admin:pw", ["sdk:pw2"])
    assert [a.perms for a in named] == [Permissions.ALL, Permissions.READ]
    assert all(a.id.scheme == "digest" for a in named)
    assert named[1].id.id.startswith("sdk:")
    with pytest.raises(InvalidInputError, match="reader"):
        config_acls("admin:pw", ["admin:other"])


def test_kazoo_errors_translate_in_one_place() -> None:
    with pytest.raises(ConfigPermissionError) as perm, kazoo_errors("write x"):
        raise NoAuthError()
    assert isinstance(perm.value.__cause__, NoAuthError)
    with pytest.raises(ConfigConflictError), kazoo_errors("write x"):
        raise BadVersionError()
    with pytest.raises(ConfigSourceError, match="unreachable"), kazoo_errors("read x"):
        raise ConnectionLoss()


def test_transaction_failure_raises_the_real_cause() -> None:
    raise_transaction_failure("ok", [True, "/path"])
    with pytest.raises(ConfigConflictError):
        raise_transaction_failure("push", [BadVersionError(), RolledBackError()])
    with pytest.raises(ConfigConflictError):
        raise_transaction_failure("push", [RolledBackError(), BadVersionError()])


def test_json_is_what_operators_see() -> None:
    doc = {"version": 3, "surfaces": {}}
    assert json.loads(encode_document(doc)) == doc


@pytest.mark.parametrize("hosts", ["", "a:b", "h:99999"])
def test_bad_connect_strings_are_refused_up_front(hosts: str) -> None:
    from enforce_sdk.config.zk_layout import check_hosts

    with pytest.raises(InvalidInputError, match="hosts"):
        check_hosts(hosts)
    assert check_hosts("h1:2181,h2:2181/chroot") == "h1:2181,h2:2181/chroot"
