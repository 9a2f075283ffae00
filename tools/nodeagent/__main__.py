"""CLI: `python -m tools.nodeagent --kubeconfig PATH [--node-name agent-node] [--gpus 2]`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import urllib.parse
from pathlib import Path

from . import network
from .agent import Agent, cleanup_stale
from .kube import Kube
from .runner import NodeContext

REPO = Path(__file__).resolve().parents[2]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="nodeagent", description=__doc__)
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--node-name", default="agent-node")
    p.add_argument("--state-dir", default=None, help="pod volumes and logs (default: a temp dir)")
    p.add_argument("--cpu", default="16")
    p.add_argument("--memory", default="64Gi")
    p.add_argument("--pods", default="110")
    p.add_argument(
        "--gpus", type=int, default=2, help="nvidia.com/gpu advertised (pods run on CPU)"
    )
    p.add_argument("--gpu-resource", default="nvidia.com/gpu")
    p.add_argument("--label", action="append", default=[], help="extra node label k=v")
    p.add_argument("--bin", default=str(REPO / ".venv" / "bin"), help="put first on the pods' PATH")
    p.add_argument("--keep-node", action="store_true", help="leave the Node object on exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    if os.geteuid() != 0:
        print("nodeagent: must run as root (network namespaces, mounts)", file=sys.stderr)
        return 2
    kube = Kube.from_kubeconfig(args.kubeconfig)
    state = Path(args.state_dir or tempfile.mkdtemp(prefix="nodeagent-"))
    state.mkdir(parents=True, exist_ok=True)
    cleanup_stale()
    network.ensure_bridge()
    api = urllib.parse.urlsplit(kube.server)
    forwarder = network.ApiForwarder(
        api.port or 443, (api.hostname or "127.0.0.1", api.port or 443)
    )
    base_env = {
        "PATH": f"{args.bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "KUBERNETES_SERVICE_HOST": network.API_HOSTNAME,
        "KUBERNETES_SERVICE_PORT": str(forwarder.port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(forwarder.port),
    }
    capacity = {
        "cpu": args.cpu,
        "memory": args.memory,
        "pods": args.pods,
        "ephemeral-storage": "100Gi",
    }
    if args.gpus:
        capacity[args.gpu_resource] = str(args.gpus)
    labels = dict(kv.split("=", 1) for kv in args.label)
    host_paths = sorted({str(REPO), sys.prefix, sys.base_prefix, os.path.realpath(args.bin)})
    ctx = NodeContext(kube, args.node_name, state, network.IpPool(), base_env,
                      host_paths=host_paths)
    agent = Agent(ctx, capacity, labels)
    signal.signal(signal.SIGTERM, lambda *_: agent.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: agent.stopping.set())
    print(f"nodeagent: node {args.node_name} ready, state {state}", file=sys.stderr, flush=True)
    try:
        agent.run()
    finally:
        agent.shutdown(delete_node=not args.keep_node)
        forwarder.close()
        network.delete_bridge()
    return 0


if __name__ == "__main__":
    sys.exit(main())
