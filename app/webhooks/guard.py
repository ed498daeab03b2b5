"""The server-side request forgery guard of webhook deliveries (SPEC §11).

A destination's name is resolved once, every address it resolves to is checked
(:func:`~app.model.webhooks.refusal`), and the request then goes to the checked address
itself, with the name as ``Host`` and as TLS server name (SNI, and the certificate check):
a name that resolves to a public address when checked and to an internal one when
connecting (DNS rebinding) cannot move the request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import NamedTuple

import httpx

from app.model.webhooks import IPAddress, literal_address, refusal


class Refused(Exception):
    """The destination is an address deliveries may not reach."""


class Target(NamedTuple):
    """Where to send: ``urls``, one per checked address (in the resolver's order, to try in
    turn when one does not connect) in place of the host, and the request ``headers`` and
    ``extensions`` that keep the name for HTTP and TLS."""

    urls: tuple[httpx.URL, ...]
    headers: dict[str, str]
    extensions: dict[str, str]


async def resolve(url: str, *, allow_private: bool) -> Target:
    """Resolve and check ``url``'s host. Raises :class:`Refused`, or ``OSError`` when the
    name does not resolve (a failure worth retrying)."""
    parsed = httpx.URL(url)
    host = parsed.host
    addresses = await _addresses(host, parsed.port or (443 if parsed.scheme == "https" else 80))
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason is not None:
                raise Refused(f"{host} resolves to {address}, {reason}")
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    return Target(
        tuple(parsed.copy_with(host=str(address)) for address in addresses),
        {"host": parsed.netloc.decode("ascii")},
        extensions,
    )


async def _addresses(host: str, port: int) -> list[IPAddress]:
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # An IPv6 address may come with a zone (fe80::1%eth0): check the address without it.
    found = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not found:
        raise OSError(f"{host} resolves to no address")
    return list(dict.fromkeys(found))
