"""Entity keys: `kind:id`, with one canonical form used everywhere.

Canonical form:
- surrounding whitespace is stripped; the kind is lower-cased and must match
  `[a-z][a-z0-9_]{0,31}`;
- the id is 1..256 characters with no whitespace, control characters or lone
  surrogates (it must encode as UTF-8);
- `domain:` ids are host names: lower-cased and IDNA-encoded, dot-separated
  labels of letters, digits, `-` and `_` (1..63 each, 253 in all; no port, path
  or query), reduced to the registrable domain by the Public Suffix List (ICANN
  and private sections); a bare public suffix is rejected; IP literals are kept
  in their compressed form;
- `image:` ids (content signatures) are lower-cased;
- every other kind keeps its id as given (ids are case-sensitive).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList

from .._errors import EntityKeyError

MAX_KEY_ID_LENGTH = 256
KIND_PATTERN = r"[a-z][a-z0-9_]{0,31}"
# One character of an id: no whitespace, no control character, no lone surrogate.
ID_CHAR_PATTERN = r"[^\s\x00-\x1f\x7f\ud800-\udfff]"
_KIND_RE = re.compile(KIND_PATTERN)
_ID_RE = re.compile(rf"{ID_CHAR_PATTERN}{{1,{MAX_KEY_ID_LENGTH}}}")
# Already-canonical keys of kinds with no special normalisation take this path.
FAST_CANONICAL_PATTERN = (
    rf"(?!domain:|image:){KIND_PATTERN}:{ID_CHAR_PATTERN}{{1,{MAX_KEY_ID_LENGTH}}}"
)
_FAST_RE = re.compile(FAST_CANONICAL_PATTERN)
_HOST_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_RE = re.compile(rf"(?=.{{1,253}}\Z)(?:{_HOST_LABEL}\.)*{_HOST_LABEL}")

_psl: PublicSuffixList | None = None


def _public_suffix_list() -> PublicSuffixList:
    global _psl
    if _psl is None:
        _psl = PublicSuffixList()
    return _psl


def _canonical_domain(raw: str) -> str:
    host = raw.strip().rstrip(".").lower()
    if not host:
        raise EntityKeyError("empty domain", field="entity")
    try:
        return "domain:" + ipaddress.ip_address(host.strip("[]")).compressed
    except ValueError:
        pass
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise EntityKeyError(f"domain {raw!r} is not a valid host name", field="entity") from exc
    if not _HOST_RE.fullmatch(host):
        raise EntityKeyError(
            f"domain {raw!r} is not a valid host name (dot-separated labels of letters, digits,"
            " '-' and '_'; no port, path or query: use domain_key_from_url for a URL)",
            field="entity",
        )
    registrable = _public_suffix_list().privatesuffix(host)
    if registrable is None:
        raise EntityKeyError(
            f"domain {raw!r} is a public suffix, not a registrable domain", field="entity"
        )
    return "domain:" + registrable


@functools.lru_cache(maxsize=65536)
def _canonical_slow(raw: str) -> str:
    text = raw.strip()
    kind, sep, ident = text.partition(":")
    if not sep:
        raise EntityKeyError(f"{raw!r} is not of the form kind:id", field="entity")
    kind = kind.strip().lower()
    ident = ident.strip()
    if not _KIND_RE.fullmatch(kind):
        raise EntityKeyError(f"kind {kind!r} must match [a-z][a-z0-9_]{{0,31}}", field="entity")
    if kind == "domain":
        return _canonical_domain(ident)
    if not _ID_RE.fullmatch(ident):
        raise EntityKeyError(
            f"id of {raw!r} must be 1..{MAX_KEY_ID_LENGTH} characters without whitespace,"
            " control characters or lone surrogates",
            field="entity",
        )
    if kind == "image":
        ident = ident.lower()
    return f"{kind}:{ident}"


def canonical_key(raw: str) -> str:
    """Return the canonical form of an entity key, or raise EntityKeyError."""
    if type(raw) is not str:
        raise EntityKeyError(
            f"entity key must be a string, got {type(raw).__name__}", field="entity"
        )
    if _FAST_RE.fullmatch(raw):
        return raw
    return _canonical_slow(raw)


def entity_kind(key: str) -> str:
    """The kind of a canonical key (the part before the first colon)."""
    return key.partition(":")[0]


def domain_key_from_url(url: str) -> str:
    """The canonical `domain:` key of a URL's host, e.g. https://www.x.co.uk/a -> domain:x.co.uk."""
    if not isinstance(url, str):
        raise EntityKeyError(f"url must be a string, got {type(url).__name__}", field="url")
    text = url.strip()
    if "://" not in text:
        text = "//" + text
    try:
        host = urlsplit(text).hostname
    except ValueError as exc:
        raise EntityKeyError(f"{url!r} is not a valid URL: {exc}", field="url") from exc
    if not host:
        raise EntityKeyError(f"{url!r} has no host", field="url")
    return _canonical_domain(host)


# Raw keys that are surely canonical without running canonical_key: a kind without special
# normalisation (not domain), or an image key already in lower-case hex. The filter holds
# canonical keys, so "absent as sent" is conclusive only for these (others are checked one
# by one). Ids cannot contain a newline, so a page joined by newlines is matched in one call.
CANONICAL_PATTERN = rf"(?:image:[0-9a-f]{{1,{MAX_KEY_ID_LENGTH}}}|{FAST_CANONICAL_PATTERN})"


CANONICAL_RE = re.compile(CANONICAL_PATTERN)


def is_canonical(raw: str) -> bool:
    """Whether canonical_key(raw) == raw (False for a malformed key)."""
    if CANONICAL_RE.fullmatch(raw):
        return True
    try:
        return canonical_key(raw) == raw
    except EntityKeyError:
        return False
