"""Link kinds: the entities an item links to (image, domain, creator, board) and their keys.

A pin's decision can take in labels on what it links to. Link values come from
whoever made the item, so they are hostile input: `related_key` turns one into
a canonical key or raises EntityKeyError (a bad value: the read path decides
that item by the surface's `on_bad_link`); misuse by the caller (an unknown
kind, a non-mapping, a value that is not a string) raises InvalidInputError
(`check_related`, `related_key`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from .._errors import EntityKeyError, InvalidInputError
from ..model.keys import canonical_key, domain_key_from_url

# Link kinds a surface may count; the client passes related keys under these names.
RELATION_KINDS: Final = ("image", "domain", "creator", "board")
# Other names accepted for a link kind, in the config and in check()'s `related`.
RELATION_ALIASES: Final[Mapping[str, str]] = MappingProxyType({"user": "creator"})


def relation_kind_names() -> tuple[str, ...]:
    """Every name a link kind may be given under: the kinds, then their aliases."""
    return (*RELATION_KINDS, *(f"{a} (= {k})" for a, k in RELATION_ALIASES.items()))
# Link kinds whose entities are keyed under another kind.
_LINK_ENTITY_KIND = {"creator": "user"}
# Every name check()'s `related` accepts, and the kind each alias stands for.
_KNOWN_KINDS = frozenset((*RELATION_KINDS, *RELATION_ALIASES))
KIND_OF_ALIAS: Mapping[str, str] = dict(RELATION_ALIASES)


def check_related(related: object, index: int) -> bool:
    """True for a mapping of known link kinds; raises InvalidInputError for anything else.

    Known kinds a surface does not list are ignored by the caller; an unknown
    kind (a typo) is misuse.
    """
    if type(related) is dict:
        if related.keys() <= _KNOWN_KINDS and not ("user" in related and "creator" in related):
            return True
    elif not isinstance(related, Mapping):
        raise InvalidInputError(
            f"item {index}: must be a mapping of link kind to id, got {type(related).__name__}",
            field="related",
        )
    for kind in related:
        if kind not in _KNOWN_KINDS:
            raise InvalidInputError(
                f"item {index}: unknown link kind {kind!r} "
                f"(accepted: {', '.join(relation_kind_names())})",
                field="related",
            )
    for alias, kind in KIND_OF_ALIAS.items():
        if alias in related and kind in related:
            raise InvalidInputError(
                f"item {index}: {alias!r} is another name for {kind!r}: give one of them",
                field="related",
            )
    return True


def related_key(kind: str, value: str) -> str:
    """The canonical key of a linked entity given as an id, a `kind:id` key or (domain) a URL."""
    if not isinstance(value, str):  # the caller's misuse, not hostile data: raise
        raise InvalidInputError(
            f"related {kind!r} must be a string, got {type(value).__name__}", field="related"
        )
    entity_kind = _LINK_ENTITY_KIND.get(kind, kind)
    prefix = entity_kind + ":"
    if value[: len(prefix)].lower() == prefix:  # already a key of the link's kind
        return canonical_key(value)
    if entity_kind == "domain":
        # Anything else is read as a browser reads a link (a bare host as https://host/):
        # deciding "URL or host" here by its characters would let `https:\\evil.com` or
        # `HTTPS:evil.com` through as a key of their own, dodging evil.com's label.
        try:
            return domain_key_from_url(value)
        except EntityKeyError:
            if value.count(":") < 2:  # not a bare IPv6 address
                raise
            return canonical_key(prefix + value)
    if ":" in value:
        key = canonical_key(value)
        if not key.startswith(prefix):  # e.g. {"creator": "pin:5"}: not a user
            raise EntityKeyError(f"a {kind} link must be a {entity_kind} id or key, "
                                 f"got a {key.partition(':')[0]} key", field="related")
        return key
    return canonical_key(prefix + value)
