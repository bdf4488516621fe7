"""Hosts as a browser reads them: WHATWG URL parsing and the registrable id of a host.

A link is hostile input, so its domain key must name the host a browser would
open, not what a looser parser guesses. URLs are parsed by the WHATWG URL
standard through ada-url: userinfo, backslashes, tabs and newlines,
percent-encoded hosts, UTS 46 IDNA (nontransitional: `faß.de` is
`xn--fa-hia.de`) and every IPv4 form (`0x7f000001`, `1.2.3`) as browsers read
them. ada decides what parses; this module only adds what the standard leaves
to the caller (a link with no scheme, which scheme names a web host) and reads
the result:

- `parse_url_host(url)` is the WHATWG host serialization (ASCII, IPv6 in
  brackets) and its type;
- `host_of_domain_id(text)` reads a bare `domain:` id through the same host
  parser, so `domain:faß.de` and `https://faß.de/` meet;
- `registrable_id(host, host_type)` is the id of the domain key: the registrable
  domain by the Public Suffix List, or the address for an IP host.

Failures raise `HostError` with the reason; `model.keys` turns it into
EntityKeyError naming the input. Nothing else escapes from here.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Final
from urllib.parse import unquote_to_bytes

from ada_url import URL, HostType, SchemeType, idna_to_ascii, parse_url
from publicsuffixlist import PublicSuffixList

# What a WHATWG parser strips from both ends of an input (it also drops tabs and newlines).
_C0_OR_SPACE: Final = "".join(map(chr, range(0x21)))
_SCHEME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
# After a scheme-like `example.com:`, a port: the input is a host and port typed without a scheme.
_PORT_RE: Final = re.compile(r"[0-9]*(?:[/\\?#]|\Z)")
_SURROGATE_RE: Final = re.compile(r"[\ud800-\udfff]")
# Characters that end a bare host, or that the id rule refuses (whitespace, controls).
_NOT_IN_BARE_HOST_RE: Final = re.compile(r"[\s\x00-\x1f\x7f/\\?#@]")
_AUTHORITY_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[/\\]*([^/\\?#]*)")
_FORBIDDEN_DOMAIN_CHARS: Final = frozenset(
    "".join(map(chr, range(0x20))) + " #%/:<>?@[\\]^|\x7f"
)
_ATTRIBUTES: Final = ("hostname", "host_type", "scheme_type")
# A host in the DNS: labels of 1..63 octets, 253 in all (without the root's trailing dot).
MAX_HOST_LENGTH: Final = 253
MAX_LABEL_LENGTH: Final = 63


class HostError(ValueError):
    """A URL or host that names no host a browser would open; the message says why."""


_psl: PublicSuffixList | None = None


def _public_suffix_list() -> PublicSuffixList:
    global _psl
    if _psl is None:
        _psl = PublicSuffixList()
    return _psl


def _absolute(text: str) -> str:
    """The input as a browser would open it when nothing gives a base (see the module doc)."""
    if len(text) >= 2 and text[0] in "/\\" and text[1] in "/\\":
        return "https:" + text  # scheme-relative: as a link on an https page
    if text[0] in "/\\":
        raise HostError("it is a path relative to its page, with no host of its own")
    if text[0] in "?#":
        raise HostError("it is a query or fragment relative to its page, with no host of its own")
    scheme = _SCHEME_RE.match(text)
    if scheme is None or ("." in scheme.group() and _PORT_RE.match(text, scheme.end())):
        return "https://" + text  # no scheme (`example.com/x`, `example.com:8080`): as typed
    return text


def _why_invalid(text: str) -> str:
    """Why the WHATWG parser refused an absolute URL: a best reading, for the message only."""
    match = _AUTHORITY_RE.match(text)
    if match is None:
        return "the WHATWG URL parser refuses it"
    host_and_port = match.group(1).rpartition("@")[2]
    if host_and_port.startswith("["):
        host, bracket, rest = host_and_port.partition("]")
        host += bracket
        port = rest[1:] if rest.startswith(":") else rest
    else:
        host, _, port = host_and_port.partition(":")
    if port and not (port.isascii() and port.isdigit()):
        return f"port {port[:20]!r} is not a number"
    if port and (len(port.lstrip("0")) > 5 or int(port) > 65535):
        return f"port {port[:20]} is out of range (0..65535)"
    if not host:
        return "it has no host"
    if host.startswith("["):
        if "%" in host:
            return f"IPv6 host {host[:60]!r} has a zone id (%...), which URLs do not allow"
        return f"{host[:60]!r} is not a valid IPv6 address"
    try:
        decoded = unquote_to_bytes(host).decode("utf-8")
    except UnicodeDecodeError:
        return f"host {host[:60]!r} is not UTF-8 once percent-decoded"
    bad = sorted(set(decoded) & _FORBIDDEN_DOMAIN_CHARS)
    if bad:
        return f"host {host[:60]!r} contains {bad[0]!r}, which no host may contain"
    if not idna_to_ascii(decoded):
        return f"host {host[:60]!r} fails IDNA (UTS 46) processing"
    last = decoded.rstrip(".").rpartition(".")[2]
    if last[:1].isdigit():
        return f"host {host[:60]!r} ends in a number but is not a valid IPv4 address"
    return "the WHATWG URL parser refuses it"


def parse_url_host(url: str, base: str | None = None) -> tuple[str, HostType]:
    """The WHATWG host serialization of the host a browser opens for `url`, and its type.

    Without `base`, a scheme-relative `//host/x` is read as a link on an https
    page and an input with no scheme (`host/x`, `host:8080`) as typed in an
    address bar, with `https://` before it. Only special schemes (http, https,
    ws, wss, ftp, file) name a host a browser opens.
    """
    if _SURROGATE_RE.search(url) or (base is not None and _SURROGATE_RE.search(base)):
        raise HostError("it contains a lone surrogate (not valid Unicode)")
    text = url.strip(_C0_OR_SPACE)
    if "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\t", "").replace("\n", "").replace("\r", "")
    if base is None:
        if not text:
            raise HostError("it is empty")
        text = _absolute(text)
        try:
            parts = parse_url(text, attributes=_ATTRIBUTES)
        except ValueError:
            raise HostError(_why_invalid(text)) from None
        host, host_type, scheme_type = parts["hostname"], parts["host_type"], parts["scheme_type"]
    else:
        try:
            parsed = URL(text, base)
        except ValueError:
            raise HostError(f"the WHATWG URL parser refuses it against base {base[:100]!r}") from None
        host, host_type, scheme_type = parsed.hostname, parsed.host_type, parsed.scheme_type
    if scheme_type == SchemeType.NOT_SPECIAL:
        raise HostError(
            f"a {_scheme(text, base)} URL names no host a browser opens (web URLs are http,"
            " https, ws, wss, ftp and file)"
        )
    if not host:
        raise HostError(f"the {_scheme(text, base)} URL has no host")
    return host, host_type


def _scheme(text: str, base: str | None) -> str:
    """The protocol (`javascript:`) of a URL that parses, for a message."""
    return str(URL(text, base).protocol)


def host_of_domain_id(text: str) -> tuple[str, HostType]:
    """A bare `domain:` id (a host name or IP address, nothing else) through the URL host parser."""
    if _NOT_IN_BARE_HOST_RE.search(text) or _SURROGATE_RE.search(text):
        raise HostError("it contains a character no host name may (whitespace, control, / \\ ? # @)")
    bracketed = ":" in text and not text.startswith("[")
    if bracketed:
        text = f"[{text}]"  # an IPv6 address, written without brackets in keys
    url = f"https://{text}/"
    try:
        parts = parse_url(url, attributes=("hostname", "host_type"))
    except ValueError:
        if bracketed and "%" not in text:
            raise HostError("only an IPv6 address may contain ':' (no port)") from None
        raise HostError(_why_invalid(url)) from None
    return parts["hostname"], parts["host_type"]


@functools.lru_cache(maxsize=65536)
def registrable_id(host: str, host_type: HostType) -> str:
    """The id of a host's domain key: its registrable domain, or its IP address.

    IPv4 stays dotted-decimal; IPv6 is compressed, without brackets, except an
    IPv4-mapped address (`::ffff:1.2.3.4`), which reaches that IPv4 host and
    gets its key. A domain loses one trailing dot and must fit the DNS (labels
    of 1..63 octets, 253 in all); a bare public suffix is refused.
    """
    if host_type == HostType.IPV4:
        return host
    if host_type == HostType.IPV6:
        address = ipaddress.IPv6Address(host.strip("[]"))
        return str(address.ipv4_mapped) if address.ipv4_mapped else host.strip("[]")
    name = host[:-1] if host.endswith(".") else host
    if len(name) > MAX_HOST_LENGTH:
        raise HostError(f"host is {len(name)} characters long, over the DNS's {MAX_HOST_LENGTH}")
    for label in name.split("."):
        if not label:
            raise HostError(f"host {host[:100]!r} has an empty label")
        if len(label) > MAX_LABEL_LENGTH:
            raise HostError(f"a label of host {host[:100]!r} is over {MAX_LABEL_LENGTH} characters")
    registrable: str | None = _public_suffix_list().privatesuffix(name)
    if registrable is None:
        raise HostError(f"{name!r} is a public suffix, not a registrable domain")
    return registrable
