"""Where a room's endpoint may send: only to public addresses, unless the operator allows private
ones (LIVE_WEBHOOK_ALLOW_PRIVATE, for receivers on a laptop or in tests).

A room's host chooses its endpoint's URL, and the dispatcher POSTs from inside the platform's
network: without a check, `http://127.0.0.1:6379/`, `http://10.0.0.5/admin` or
`http://169.254.169.254/latest/meta-data/` would make the service a proxy into that network
(server-side request forgery). The URL is checked twice: when the host adds it (an early, clear
refusal), and when a delivery connects. The second check is the one that counts: a name can
resolve elsewhere by then (DNS rebinding), so the dispatcher resolves it itself, requires every
address to be global, and connects to the address it checked (`PublicTransport`). The global
endpoints (LIVE_WEBHOOK_URL) are the operator's own and are not checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpcore
import httpx

from rooms.errors import Invalid

NOT_PUBLIC = "url_not_public"  # the documented code of a refused room endpoint


def is_public(address: str) -> bool:
    """Whether `address` (an IP address) is globally routable: not loopback, private,
    link-local (the cloud metadata service), CGNAT, unspecified, multicast or reserved."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0].strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve(host: str, port: int, timeout_s: float) -> list[str]:
    """Every address `host` resolves to (itself when it is an address), in the resolver's
    order; raises OSError or TimeoutError when it does not resolve within `timeout_s`."""
    host = host.strip("[]")
    async with asyncio.timeout(timeout_s):
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


async def check_public_url(url: str, timeout_s: float) -> None:
    """Refuse (422 `url_not_public`) a URL whose host is, or resolves to, an address that is
    not public. A name that does not resolve now is let through: the check at connect time
    refuses it should it resolve to a private address later."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = await resolve(host, port, timeout_s)
    except (OSError, TimeoutError, UnicodeError):
        return
    if not addresses or not all(is_public(address) for address in addresses):
        raise Invalid(
            NOT_PUBLIC,
            f"{host} is, or resolves to, an address that is not public (loopback, private, "
            "link-local or reserved); webhooks go to public addresses only",
        )


class _PublicOnly(httpcore.AsyncNetworkBackend):
    """httpcore's own backend, connecting only to addresses checked public: the name is
    resolved here, each address checked, and the connection made to the checked address (TLS
    still verifies the certificate for the URL's host name)."""

    def __init__(self, resolve_timeout_s: float) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._resolve_timeout_s = resolve_timeout_s

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await resolve(host, port, timeout or self._resolve_timeout_s)
        except (OSError, TimeoutError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {exc!r}") from None
        if not addresses or not all(is_public(address) for address in addresses):
            raise httpcore.ConnectError(f"{host} resolves to an address that is not public")
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:  # the next address, as a resolver's client would
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are not sent to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PublicTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over `_PublicOnly`: every connection it opens goes to a public
    address. (httpx takes no network backend of its own, so its connection pool is made here
    with httpx's TLS defaults.)"""

    def __init__(self, limits: httpx.Limits, resolve_timeout_s: float) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PublicOnly(resolve_timeout_s),
        )
