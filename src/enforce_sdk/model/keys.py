"""Entity keys: `kind:id`, with one canonical form used everywhere.

Canonical form:
- surrounding whitespace is stripped; the kind is lower-cased and must match
  `[a-z][a-z0-9_]{0,31}`;
- the id is 1..256 characters with no whitespace, control characters or lone
  surrogates (it must encode as UTF-8);
- `domain:` ids are hosts, read by the WHATWG URL host parser as a browser
  reads them (UTS 46 IDNA, percent-decoding, every IPv4 form), so a bare key
  and a URL to the same host meet (`model.hosts`). A domain is reduced to its
  registrable domain by the Public Suffix List (ICANN and private sections); a
  bare public suffix is refused. An IP host keeps its address: IPv4
  dotted-decimal, IPv6 compressed without brackets (IPv4-mapped IPv6 is the
  IPv4 address). No port, path or query: `domain_key_from_url` reads a URL;
- `image:` ids (content signatures) are lower-cased; an `image:` id of exactly 64 hex
  characters is a PDQ signature (`pdq_hash_of_key`), any other image id is opaque;
- every other kind keeps its id as given (ids are case-sensitive).
"""

from __future__ import annotations

import functools
import re
import unicodedata

from .._errors import EntityKeyError
from .hosts import HostError, host_of_domain_id, parse_url_host, registrable_id

MAX_KEY_ID_LENGTH = 256
# A raw key longer than this is refused before any work or caching (whitespace around a
# valid key included): `"pin:1" + 8 MB of spaces` must not be read, let alone cached.
MAX_RAW_KEY_LENGTH = 1024
# URLs up to this length are remembered with their key (links repeat across a feed).
MAX_CACHED_URL_LENGTH = 1024
KIND_PATTERN = r"[a-z][a-z0-9_]{0,31}"
# One character of an id: no whitespace, no control character, no lone surrogate.
ID_CHAR_PATTERN = r"[^\s\x00-\x1f\x7f\ud800-\udfff]"
# Already-canonical ids on the fast path are printable ASCII; any other character is
# checked by its Unicode category on the slow path (see _refused_character).
_FAST_ID_CHAR = r"[!-~]"
# Unicode categories refused in ids: controls (Cc: C1 controls too), format characters
# (Cf: U+200B zero width space, U+202E right-to-left override, U+FEFF byte order mark),
# line and paragraph separators (Zl, Zp), space separators (Zs), surrogates (Cs) and
# unassigned code points (Cn): characters that hide or reorder what a reviewer reads.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Zs", "Cs", "Cn"})
_KIND_RE = re.compile(KIND_PATTERN)
_ID_RE = re.compile(rf"{ID_CHAR_PATTERN}{{1,{MAX_KEY_ID_LENGTH}}}")
# Already-canonical keys of kinds with no special normalisation take this path.
FAST_CANONICAL_PATTERN = (
    rf"(?!domain:|image:){KIND_PATTERN}:{_FAST_ID_CHAR}{{1,{MAX_KEY_ID_LENGTH}}}"
)
_FAST_RE = re.compile(FAST_CANONICAL_PATTERN)


def _shown(text: str) -> str:
    """An input for an error message: hostile text can be long."""
    return repr(text) if len(text) <= 200 else repr(text[:200]) + "..."


def _canonical_domain(raw: str) -> str:
    if not raw:
        raise EntityKeyError("empty domain", field="entity")
    try:
        return "domain:" + registrable_id(*host_of_domain_id(raw))
    except HostError as exc:
        raise EntityKeyError(
            f"domain {_shown(raw)} is not a valid host name: {exc} (a host name or IP address"
            " only, no port, path or query: use domain_key_from_url for a URL)",
            field="entity",
        ) from None


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
    if not ident.isascii():
        refused = _refused_character(ident)
        if refused is not None:
            raise EntityKeyError(
                f"id of {raw!r} holds {refused}: ids may not hold characters of the Unicode "
                f"categories {', '.join(sorted(REFUSED_CATEGORIES))}",
                field="entity",
            )
    if kind == "image":
        ident = ident.lower()
    return f"{kind}:{ident}"


def _refused_character(ident: str) -> str | None:
    """The first character of `ident` in a refused category, described, or None."""
    for char in ident:
        if not char.isascii():
            category = unicodedata.category(char)
            if category in REFUSED_CATEGORIES:
                return f"U+{ord(char):04X} ({category})"
    return None


def canonical_key(raw: str) -> str:
    """Return the canonical form of an entity key, or raise EntityKeyError."""
    if type(raw) is not str:
        raise EntityKeyError(
            f"entity key must be a string, got {type(raw).__name__}", field="entity"
        )
    if _FAST_RE.fullmatch(raw):
        return raw
    if len(raw) > MAX_RAW_KEY_LENGTH:
        raise EntityKeyError(
            f"entity key of {len(raw)} characters is over the limit of {MAX_RAW_KEY_LENGTH}",
            field="entity",
        )
    return _canonical_slow(raw)


def entity_kind(key: str) -> str:
    """The kind of a canonical key (the part before the first colon)."""
    return key.partition(":")[0]


def domain_key_from_url(url: str) -> str:
    """The `domain:` key of the host a browser opens for `url`.

    https://www.x.co.uk/a -> domain:x.co.uk; `//x.com/a` is read as a link on an
    https page, `x.com/a` as typed in an address bar (docs/label-schema.md).
    """
    if type(url) is not str:
        raise EntityKeyError(f"url must be a string, got {type(url).__name__}", field="url")
    if len(url) <= MAX_CACHED_URL_LENGTH:
        return _url_key_cached(url)
    return _url_key(url)


def _url_key(url: str) -> str:
    try:
        return "domain:" + registrable_id(*parse_url_host(url))
    except HostError as exc:
        raise EntityKeyError(f"{_shown(url)} is not a web link: {exc}", field="url") from None


def url_host(url: str, base: str | None = None) -> str:
    """The host a browser opens for `url` (against `base` if given), as WHATWG serializes it.

    ASCII, IPv6 in brackets, before any Public Suffix List reduction: what
    `domain_key_from_url` reduces to a key.
    """
    if type(url) is not str or (base is not None and type(base) is not str):
        raise EntityKeyError("url and base must be strings", field="url")
    try:
        return parse_url_host(url, base)[0]
    except HostError as exc:
        raise EntityKeyError(f"{_shown(url)} is not a web link: {exc}", field="url") from None


_url_key_cached = functools.lru_cache(maxsize=16384)(_url_key)


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


PDQ_HEX_LENGTH = 64
_PDQ_KEY_RE = re.compile(r"image:([0-9a-f]{64})")


def pdq_hash_of_key(raw: str) -> str | None:
    """The PDQ hash (64 lower-case hex characters) an image key names, else None.

    `raw` is canonicalised first, so `image:<64 HEX>` reads as its lower-case hash; any
    other key (another kind, or an opaque image id of another length or alphabet) gives
    None. EntityKeyError if `raw` is not a key at all.
    """
    match = _PDQ_KEY_RE.fullmatch(canonical_key(raw))
    return match.group(1) if match else None
