"""The Origin check of both push transports (SPEC §5.5), with n8n's host rules.

A request without ``Origin`` passes (same-origin ``EventSource`` and non-browser clients
omit it). Otherwise the Origin's host must equal the host the request was addressed to:
the ``Forwarded`` header's ``host=``, else ``X-Forwarded-Host``, else ``Host`` (first value
of each), compared after normalising case, IPv6 brackets and the scheme's default port;
the scheme is the Origin's unless ``Forwarded: proto=`` / ``X-Forwarded-Proto`` names one.
An Origin listed in ``allowed`` (same normalisation) passes too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_allowed(headers: Mapping[str, str], allowed: Iterable[str] = ()) -> bool:
    """True when the request may open a push connection. ``headers`` keys are lower-case."""
    origin = headers.get("origin")
    if origin is None:
        return True
    parsed = parse_origin(origin)
    if parsed is None:
        return False
    scheme, host = parsed
    if any(parse_origin(entry) == parsed for entry in allowed):
        return True
    raw_host, proto = _addressed_host(headers)
    return raw_host is not None and normalize_host(raw_host, proto or scheme) == host


def parse_origin(origin: str) -> tuple[str, str] | None:
    """``"https://Example.com:443"`` → ``("https", "example.com")``, ``"http://[::1]:8000"`` →
    ``("http", "::1:8000")`` (n8n's form); None unless it is an http(s) origin."""
    try:
        url = urlsplit(origin.strip())
        port = url.port
    except ValueError:
        return None
    if url.scheme.lower() not in ("http", "https") or not url.hostname:
        return None
    scheme = url.scheme.lower()
    host = url.hostname.lower()
    return scheme, host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"


def normalize_host(host: str, scheme: str) -> str | None:
    """``"[::1]:80"`` with ``http`` → ``"::1"``; None if it is not a valid host."""
    parsed = parse_origin(f"{scheme}://{host.strip()}")
    return None if parsed is None else parsed[1]


def _addressed_host(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    forwarded = _parse_forwarded(headers.get("forwarded", ""))
    if forwarded.get("host"):
        return forwarded["host"], _proto(forwarded.get("proto"))
    x_host = _first(headers.get("x-forwarded-host"))
    if x_host:
        return x_host, _proto(_first(headers.get("x-forwarded-proto")))
    return headers.get("host"), None


def _parse_forwarded(value: str) -> dict[str, str]:
    """The first entry of an RFC 7239 ``Forwarded`` header as ``{key: value}``."""
    entry = value.split(",", 1)[0]
    pairs = (part.partition("=") for part in entry.split(";"))
    return {k.strip().lower(): v.strip().strip("\"'") for k, sep, v in pairs if sep and v}


def _first(value: str | None) -> str | None:
    return value.split(",", 1)[0].strip() if value else None


def _proto(value: str | None) -> str | None:
    proto = (value or "").strip().lower()
    return proto if proto in ("http", "https") else None
