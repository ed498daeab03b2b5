"""Completion webhooks as stored (SPEC §11): one :class:`WebhookDelivery` per event of a run
(an outbox row, written with the status it reports), the attempts made, and the rules on
URLs (which addresses are refused) and on retries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Final, Literal, Protocol
from urllib.parse import urlsplit

import msgspec

from app.errors import WebhookUrlRefused, problem
from app.model.records import ExecutionRecord

WebhookEvent = Literal["execution.finished", "execution.waiting"]
DeliveryStatus = Literal["pending", "delivered", "failed"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Cloud metadata endpoints (AWS, GCP, Azure share the IPv4 one; AWS's IPv6 one).
METADATA_ADDRESSES: Final = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)


class Attempt(msgspec.Struct, frozen=True, omit_defaults=True):
    """One try: when (epoch ms), and the receiver's status code or why there was none."""

    at: int
    status_code: int | None = None
    error: str | None = None


class WebhookDelivery(msgspec.Struct, kw_only=True):
    """One webhook message: ``id`` is its ``webhook-id`` (the same on every retry, so a
    receiver can drop duplicates); ``payload`` is the exact JSON body signed and sent."""

    id: str
    execution_id: str
    event: WebhookEvent
    url: str
    payload: bytes
    created_at: int
    status: DeliveryStatus = "pending"
    attempts: list[Attempt] = msgspec.field(default_factory=list)
    #: When the next attempt is due (epoch ms); None once delivered or failed.
    next_attempt_at: int | None = None

    def after(self, attempt: Attempt, schedule: Sequence[float], *, final: bool) -> None:
        """Record ``attempt``: a 2xx delivers; otherwise the next try is due after the
        schedule's delay for this retry, or the delivery has ``failed`` when the schedule is
        spent or the failure is ``final`` (a refused address)."""
        self.attempts.append(attempt)
        retry = len(self.attempts) - 1
        if attempt.status_code is not None and 200 <= attempt.status_code < 300:
            self.status, self.next_attempt_at = "delivered", None
        elif final or retry >= len(schedule):
            self.status, self.next_attempt_at = "failed", None
        else:
            self.next_attempt_at = attempt.at + round(schedule[retry] * 1000)


class Outbox(Protocol):
    """Where a run's end or pause is announced beyond push (the webhooks, SPEC §11)."""

    def deliveries(self, record: ExecutionRecord) -> list[WebhookDelivery]:
        """The outbox rows of ``record``'s new status, staged in its transaction."""
        ...

    def committed(self) -> None:
        """Rows staged so far are durable."""
        ...


#: Decodes a delivery as the stores keep it (msgspec JSON of :class:`WebhookDelivery`).
decode_delivery = msgspec.json.Decoder(WebhookDelivery).decode


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` is refused as a webhook destination (None: it is not): anything
    but a public unicast address, so loopback, private, link-local, multicast, unspecified,
    reserved and cloud metadata addresses (an IPv4-mapped IPv6 address as its IPv4 one)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for kind in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    return None if address.is_global else "not a public address"


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_webhook_url(url: str, *, allow_private: bool, path: str) -> None:
    """Raise :class:`WebhookUrlRefused` (naming ``path``) unless ``url`` is an http(s) URL
    with a host that is not a literal refused address. Names are resolved at delivery."""
    reason = _url_refusal(url, allow_private)
    if reason is not None:
        raise WebhookUrlRefused(f"webhook URL refused: {reason}", [problem(path, reason)])


def _url_refusal(url: str, allow_private: bool) -> str | None:
    try:
        parts = urlsplit(url)
        if parts.port == 0:  # reading the port also raises ValueError for a bad one
            return "port 0"
    except ValueError as exc:
        return f"not a URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected an http:// or https:// URL with a host"
    address = literal_address(parts.hostname)
    reason = None if address is None or allow_private else refusal(address)
    return None if reason is None else f"{parts.hostname} is {reason}"
