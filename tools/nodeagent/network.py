"""Pod networking: one bridge on the host, one network namespace and veth pair per pod.

Kubernetes refuses loopback addresses in EndpointSlices, so pods need real addresses: the agent
owns bridge `kr0` (10.250.0.1/24) and gives each pod 10.250.0.2 and up. The API server listens on
loopback only, which a pod's namespace cannot reach; `ApiForwarder` relays 10.250.0.1:<port> to it
byte for byte (TLS stays end to end), and each pod's /etc/hosts maps the name
`kubernetes.default.svc` (in the API server's certificate) to 10.250.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import shutil
import socket
import subprocess
import threading
from pathlib import Path

BRIDGE = "kr0"
NETWORK = ipaddress.ip_network("10.250.0.0/24")
GATEWAY = "10.250.0.1"
API_HOSTNAME = "kubernetes.default.svc"
NETNS_PREFIX = "krpod-"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def ensure_bridge() -> None:
    if sh("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
    addrs = sh("ip", "-br", "addr", "show", BRIDGE).stdout
    if f"{GATEWAY}/" not in addrs:
        sh("ip", "addr", "add", f"{GATEWAY}/{NETWORK.prefixlen}", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")


def delete_bridge() -> None:
    sh("ip", "link", "del", BRIDGE, check=False)


def netns_name(pod_uid: str) -> str:
    return NETNS_PREFIX + pod_uid[:12]


def stale_netns() -> list[str]:
    out = sh("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(NETNS_PREFIX)]


class IpPool:
    """Hands out pod addresses; the bridge's own address and the broadcast are never given."""

    def __init__(self) -> None:
        self._free = [str(h) for h in NETWORK.hosts() if str(h) != GATEWAY]
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            return self._free.pop(0)

    def give_back(self, ip: str) -> None:
        with self._lock:
            if ip not in self._free:
                self._free.append(ip)


def create_pod_network(pod_uid: str, ip: str, hosts: str) -> str:
    """Make a namespace with eth0=ip on the bridge; returns the namespace name."""
    ns = netns_name(pod_uid)
    host_if = "krv" + hashlib.sha1(pod_uid.encode()).hexdigest()[:10]
    delete_pod_network(pod_uid)
    sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", "krpeer0", "netns", ns)
    sh("ip", "link", "set", host_if, "master", BRIDGE)
    sh("ip", "link", "set", host_if, "up")
    sh("ip", "-n", ns, "link", "set", "krpeer0", "name", "eth0")
    sh("ip", "-n", ns, "addr", "add", f"{ip}/{NETWORK.prefixlen}", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", ns, "route", "add", "default", "via", GATEWAY)
    # `ip netns exec` bind-mounts /etc/netns/<ns>/* over /etc: the pod's own hosts and an empty
    # resolver config, so a reverse lookup fails at once instead of timing out.
    etc = Path("/etc/netns") / ns
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text(hosts)
    (etc / "resolv.conf").write_text("options timeout:1 attempts:1\n")
    return ns


def delete_pod_network(pod_uid: str) -> None:
    ns = netns_name(pod_uid)
    sh("ip", "netns", "del", ns, check=False)  # removes the veth pair with it
    shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)


def pod_hosts(pod_name: str, ip: str) -> str:
    return (
        "127.0.0.1 localhost\n"
        f"{ip} {pod_name}\n"
        f"{GATEWAY} {API_HOSTNAME} kubernetes.default kubernetes\n"
    )


class ApiForwarder:
    """Relays TCP from the bridge address to the loopback API server (TLS passes through)."""

    def __init__(self, listen_port: int, target: tuple[str, int]) -> None:
        self.target = target
        self._sock = socket.create_server((GATEWAY, listen_port), reuse_port=False)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="api-forwarder").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)

    def close(self) -> None:
        self._sock.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
