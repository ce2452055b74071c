"""The egress proxy of a runner-only sandbox: the few outside hosts a run may reach. Stdlib only.

The supervisor runs it, outside the sandbox, on the Unix socket `net/proxy.sock`;
inside, the netbridge listens on 127.0.0.1:PROXY_PORT and carries each
connection there, and HTTP_PROXY / HTTPS_PROXY point at it (git, pip, npm,
curl and Claude Code all honour them). It speaks the two forms of an HTTP proxy:

- `CONNECT host:port` (HTTPS, git over https): a tunnel, end to end encrypted;
- `GET http://host/path` (plain HTTP): forwarded with the request line made relative.

A request goes through only when its host name is on the run's allow-list
(`host`, `host:port`, `*.domain` — without a port, 80 and 443) and the name
resolves to an address outside loopback, private, link-local, multicast and
reserved ranges (an operator may open a private network, e.g. an in-house git
server, with SANDBOX_EGRESS_PRIVATE_NETWORKS; loopback never). The proxy
connects to the very address it checked, so a name that resolves elsewhere the
second time (DNS rebinding) gains nothing. Anything else is answered `403` with
the reason, and reported (on_refusal), which the supervisor turns into an event
in the run's transcript.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

PROXY_PORT = 3128
DEFAULT_PORTS = (80, 443)
MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 30
CONNECT_TIMEOUT = 10

Rule = tuple[str, int | None]  # (host or "*.domain", port or None for 80/443)


class RuleError(ValueError):
    pass


def parse_rule(entry: str) -> Rule:
    """'github.com', 'pypi.org:443', '*.pythonhosted.org' → (host, port)."""
    text = entry.strip().lower().rstrip(".")
    host, sep, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    port = None
    if sep:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise RuleError(f"{entry!r}: the port must be a number from 1 to 65535.")
        port = int(port_text)
    name = host[2:] if host.startswith("*.") else host
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or not all(
            label
            and len(label) <= 63
            and label.replace("-", "").isalnum()
            and label.isascii()
            and not label.startswith("-")
            for label in labels
        )
    ):
        raise RuleError(f"{entry!r} is not a host name (e.g. github.com, *.pythonhosted.org).")
    return host, port


def is_allowed(host: str, port: int, rules: list[Rule]) -> bool:
    host = host.lower().rstrip(".")
    for pattern, allowed_port in rules:
        if port not in ((allowed_port,) if allowed_port else DEFAULT_PORTS):
            continue
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def address_problem(address: str, open_networks: list) -> str | None:
    """Why the proxy must not connect to this address, or None."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_unspecified:
        return "loopback addresses are never reachable through the proxy"
    if ip.is_global and not ip.is_multicast:
        return None
    if ip.is_multicast or ip.is_link_local:
        return f"{ip} is a link-local or multicast address"
    if any(ip in network for network in open_networks):
        return None
    return f"{ip} is in a private or reserved range"


class Refused(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class EgressProxy:
    def __init__(
        self,
        rules: list[Rule],
        *,
        open_networks: list[str] = (),
        static_hosts: dict[str, str] | None = None,
        on_refusal: Callable[[str, int, str], None] = lambda host, port, reason: None,
    ):
        self.rules = rules
        self.open_networks = [ipaddress.ip_network(n, strict=False) for n in open_networks]
        self.static_hosts = {k.lower(): v for k, v in (static_hosts or {}).items()}
        self.on_refusal = on_refusal

    def resolve(self, host: str, port: int) -> list[str]:
        if host in self.static_hosts:
            return [self.static_hosts[host]]
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            pass
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Refused(502, f"{host} does not resolve: {exc}") from None
        return list(dict.fromkeys(info[4][0] for info in found))

    def open(self, host: str, port: int) -> socket.socket:
        """A connection to host:port, or Refused saying why not."""
        if not is_allowed(host, port, self.rules):
            raise Refused(403, f"{host}:{port} is not on the run's allow-list")
        blocked, failed = [], []
        for address in self.resolve(host, port):
            problem = address_problem(address, self.open_networks)
            if problem:
                blocked.append(problem)
                continue
            try:
                upstream = socket.create_connection((address, port), timeout=CONNECT_TIMEOUT)
            except OSError as exc:
                failed.append(f"{address}: {exc.strerror or exc}")
                continue
            upstream.settimeout(None)
            return upstream
        status = 502 if failed or not blocked else 403
        raise Refused(status, f"{host}:{port}: " + "; ".join(blocked + failed or ["no address"]))

    def handle(self, conn: socket.socket) -> socket.socket | None:
        """Read the request, open the way; return the upstream to pipe to (None: answered)."""
        conn.settimeout(HEAD_TIMEOUT)
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return None
                head += chunk
                if len(head) > MAX_HEAD:
                    return self._answer(conn, 431, "request head too large")
        except OSError:
            return None
        conn.settimeout(None)
        head, _, rest = head.partition(b"\r\n\r\n")
        request_line, _, headers = head.partition(b"\r\n")
        parts = request_line.decode("latin-1").split(" ")
        if len(parts) != 3:
            return self._answer(conn, 400, "not an HTTP request")
        method, target, version = parts
        try:
            if method == "CONNECT":
                host, port = _host_port(target, None)
                upstream = self._open_or_refuse(host, port)
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    upstream.sendall(rest)
                return upstream
            if not target.lower().startswith("http://"):
                return self._answer(conn, 400, "only CONNECT and http:// URLs go through")
            authority, slash, path = target[7:].partition("/")
            host, port = _host_port(authority, 80)
            upstream = self._open_or_refuse(host, port)
            kept = [
                line
                for line in headers.split(b"\r\n")
                if line and not line.lower().startswith((b"proxy-", b"connection:"))
            ]
            upstream.sendall(
                f"{method} {slash}{path or ''} {version}\r\n".encode("latin-1")
                + b"".join(line + b"\r\n" for line in kept)
                + b"Connection: close\r\n\r\n"
                + rest
            )
            return upstream
        except Refused as refused:
            return self._answer(conn, refused.status, refused.reason)
        except ValueError as exc:
            return self._answer(conn, 400, str(exc))

    def _open_or_refuse(self, host: str, port: int) -> socket.socket:
        try:
            return self.open(host, port)
        except Refused as refused:
            self.on_refusal(host, port, refused.reason)
            raise

    @staticmethod
    def _answer(conn: socket.socket, status: int, reason: str) -> None:
        phrase = {400: "Bad Request", 403: "Forbidden", 431: "Too Large", 502: "Bad Gateway"}
        body = f"agentloop egress proxy: {reason}\n".encode()
        try:
            conn.sendall(
                f"HTTP/1.1 {status} {phrase.get(status, 'Error')}\r\n"
                f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
        except OSError:
            pass
        conn.close()
        return None


def _host_port(authority: str, default_port: int | None) -> tuple[str, int]:
    authority = authority.split("@")[-1]
    if authority.startswith("["):  # [v6]:port
        host, _, tail = authority[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = authority.partition(":")
    if not port_text:
        if default_port is None:
            raise ValueError("CONNECT needs host:port")
        return host.lower(), default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in {authority!r}")
    return host.lower(), int(port_text)
