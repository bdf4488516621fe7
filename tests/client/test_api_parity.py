"""The sync and async clients expose the same API: same names, parameters and defaults.

Every public method of EnforcementClient has a counterpart on
AsyncEnforcementClient (same name, or the async spelling of a lifecycle
method), with the same parameters, kinds and defaults; the I/O methods of the
async client are coroutines, the others are not.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from enforce_sdk.client.async_client import AsyncEnforcementClient
from enforce_sdk.client.client import EnforcementClient

# sync name -> async name, where the async spelling differs
RENAMED = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}
# methods whose async counterpart is a coroutine function
COROUTINES = {"check", "check_many", "filter", "wait_until_ready", "aclose", "__aenter__", "__aexit__"}
# constructor parameters whose type differs by design (a sync or an async store reader)
FACE_TYPED = {"store"}


def public_members(cls: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") or name in RENAMED or name in RENAMED.values()
        if name not in ("__class__",)
    }


def params(fn: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """(name, kind, default) of every parameter."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_every_public_name_has_its_counterpart() -> None:
    sync_names = {RENAMED.get(n, n) for n in public_members(EnforcementClient)}
    async_names = set(public_members(AsyncEnforcementClient))
    assert sync_names == async_names


@pytest.mark.parametrize("name", sorted(public_members(EnforcementClient)))
def test_same_parameters_and_defaults(name: str) -> None:
    sync_member = public_members(EnforcementClient)[name]
    async_member = public_members(AsyncEnforcementClient)[RENAMED.get(name, name)]
    assert isinstance(sync_member, property) == isinstance(async_member, property)
    if isinstance(sync_member, property):
        return
    assert params(sync_member) == params(async_member)


@pytest.mark.parametrize("name", sorted(public_members(AsyncEnforcementClient)))
def test_io_methods_are_coroutines_and_only_they(name: str) -> None:
    member = public_members(AsyncEnforcementClient)[name]
    if isinstance(member, property):
        return
    assert inspect.iscoroutinefunction(member) == (name in COROUTINES), name
    sync_name = {v: k for k, v in RENAMED.items()}.get(name, name)
    assert not inspect.iscoroutinefunction(getattr(EnforcementClient, sync_name))


def test_constructors_match_except_the_store_type() -> None:
    sync_sig = inspect.signature(EnforcementClient.__init__)
    async_sig = inspect.signature(AsyncEnforcementClient.__init__)
    assert params(EnforcementClient.__init__) == params(AsyncEnforcementClient.__init__)
    for name, param in sync_sig.parameters.items():
        if name in FACE_TYPED:
            assert param.annotation != async_sig.parameters[name].annotation
        else:
            assert param.annotation == async_sig.parameters[name].annotation, name


def test_return_annotations_match() -> None:
    for name in ("check", "check_many", "filter"):
        sync_ret = inspect.signature(getattr(EnforcementClient, name)).return_annotation
        async_ret = inspect.signature(getattr(AsyncEnforcementClient, name)).return_annotation
        assert sync_ret == async_ret, name
