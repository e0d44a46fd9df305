"""Where a webhook may be sent: no private, loopback or link-local addresses unless allowed.

A subscription's URL is checked when it is added and again before every delivery, because DNS
may change: the host name is resolved and *every* address it resolves to must be allowed. The
default transport of :class:`~alerts.sender.WebhookSender` also pins the connection: its network
backend resolves, checks and connects to the checked address itself (:class:`GuardedBackend`), so
a host that answers differently on the second lookup (DNS rebinding) still cannot reach inside.

An allow-list (``IOC_WEBHOOK_ALLOW_HOSTS``) opens holes on purpose: CIDRs (``10.20.0.0/16``),
single addresses (``192.168.1.5``), host names (``sms-gateway.lan``) or wildcard domains
(``*.coop.lan``). ``IOC_WEBHOOK_ALLOW_PRIVATE=true`` turns the check off.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpcore
import httpx

from alerts.errors import TargetRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
"""Host name and port → the addresses it resolves to (as text)."""

_HOST = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_-]{0,62})?(\.[a-z0-9_]([a-z0-9_-]{0,62})?)*\.?$")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6), in the order the system gives."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"cannot resolve {host!r}: {exc}", url=host) from None
    out: list[str] = []
    for *_, sockaddr in infos:
        addr = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 zone id
        if addr not in out:
            out.append(addr)
    return out


def is_public(ip: IPAddress) -> bool:
    """True for globally routable unicast addresses (not private, loopback, link-local, ULA, …)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public(ip.ipv4_mapped)
        if ip in _NAT64:
            return is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None:
            return is_public(ip.sixtofour)
    return ip.is_global and not ip.is_multicast and not ip.is_unspecified


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """What a webhook may point at. Build with :meth:`parse` (validates the allow-list)."""

    allow_private: bool = False
    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()
    """Wildcard entries ``*.example.lan`` as suffixes ``.example.lan``."""
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def parse(
        cls, allow_hosts: Iterable[str] = (), *, allow_private: bool = False, resolver: Resolver | None = None
    ) -> TargetPolicy:
        """Build a policy from allow-list entries; raise ``ValueError`` naming a bad entry."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        domains: list[str] = []
        for raw in allow_hosts:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if not _HOST.match(entry):
                raise ValueError(f"allow-list entry {raw!r} is neither a CIDR (10.0.0.0/8), an address nor a host name")
            if entry.startswith("*."):
                domains.append(entry[1:].rstrip("."))
            else:
                hosts.add(entry.rstrip("."))
        return cls(
            allow_private=allow_private,
            networks=tuple(networks),
            hosts=frozenset(hosts),
            domains=tuple(domains),
            resolver=resolver or system_resolver,
        )

    def host_allowed(self, host: str) -> bool:
        """A host name on the allow-list (exactly or under a wildcard domain)."""
        name = host.lower().rstrip(".")
        return name in self.hosts or any(name.endswith(d) for d in self.domains)

    def address_allowed(self, ip: IPAddress) -> bool:
        if self.allow_private or is_public(ip):
            return True
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == n.version and ip in n for n in self.networks)

    def check_addresses(self, host: str, addresses: Sequence[str], *, url: str = "") -> None:
        """Raise :class:`TargetRefused` unless the host is allow-listed or every address is allowed."""
        if not addresses:
            raise TargetRefused(f"{host!r} resolves to no address", url=url or host)
        if self.allow_private or self.host_allowed(host):
            return
        refused = [a for a in addresses if not self.address_allowed(ipaddress.ip_address(a))]
        if refused:
            raise TargetRefused(
                f"{host!r} resolves to {', '.join(refused)}: private, loopback, link-local or reserved "
                "addresses are refused (allow them with IOC_WEBHOOK_ALLOW_HOSTS or IOC_WEBHOOK_ALLOW_PRIVATE)",
                url=url or host,
                addresses=tuple(addresses),
            )

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` (an address literal is its own)."""
        try:
            return [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            pass
        try:
            return list(self.resolver(host, port))
        except TargetRefused:
            raise
        except (OSError, UnicodeError) as exc:
            raise TargetRefused(f"cannot resolve {host!r}: {exc}", url=host) from None

    def check_url(self, url: str) -> list[str]:
        """Check a webhook URL (scheme, host, every resolved address); return the allowed addresses."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise TargetRefused(f"webhook URL must be http:// or https://, got {url!r}", url=url)
        host = parts.hostname
        if not host:
            raise TargetRefused(f"webhook URL has no host: {url!r}", url=url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise TargetRefused(f"webhook URL has a bad port: {url!r}", url=url) from None
        if self.allow_private or self.host_allowed(host):
            return []
        addresses = self.resolve(host, port)
        self.check_addresses(host, addresses, url=url)
        return addresses


def check_url(url: str, policy: TargetPolicy) -> list[str]:
    """Module-level alias of :meth:`TargetPolicy.check_url`."""
    return policy.check_url(url)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses the policy allows.

    It resolves the host itself, checks every address, and connects to the checked address (TLS
    still verifies the certificate against the host name), so the address we checked is the one
    we talk to.
    """

    def __init__(self, policy: TargetPolicy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self._policy.allow_private:
            addresses = [host]
        else:
            addresses = await asyncio.to_thread(self._policy.resolve, host, port)
            if not self._policy.host_allowed(host):
                self._policy.check_addresses(host, addresses)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRefused("webhooks are never sent over unix sockets", url=path)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's default transport, connecting through :class:`GuardedBackend` (no proxies, no env)."""

    def __init__(self, policy: TargetPolicy, *, limits: httpx.Limits | None = None) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
        super().__init__(trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )
