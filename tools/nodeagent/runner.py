"""One pod's life on the agent's node: network, volumes, init containers, containers, probes.

Each container is a process started as `ip netns exec <pod-ns> python shim.py <spec>`:
`ip netns exec` gives it the pod's network and a private mount namespace (with the pod's
/etc/hosts), where shim.py bind-mounts the pod's volume directories onto the container's
mountPaths and then execs the container's command. Images are not pulled: the command must be one
found on the agent's PATH (our console scripts in the repository's .venv).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import network
from .kube import ApiError, Kube
from .podspec import (
    ConfigError,
    ContainerState,
    PodView,
    command_line,
    container_env,
    pod_status,
    probe_port,
    secret_data,
)
from .volumes import materialize

Obj = dict[str, Any]
log = logging.getLogger("nodeagent")

SHIM = str(Path(__file__).with_name("shim.py"))
START_MARK = "--- "  # begins the line the agent writes to a container's log at each start

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class NodeContext:
    """What every pod worker shares with the agent."""

    kube: Kube
    node_name: str
    state_dir: Path
    ips: network.IpPool
    base_env: dict[str, str]
    backoff_cap_s: float = 20.0
    # Host paths a container's command needs (checkout, venv, interpreter); never hidden by volumes.
    host_paths: list[str] = field(default_factory=list)


@dataclass
class ProbeState:
    successes: int = 0
    failures: int = 0
    next_at: float = 0.0


@dataclass
class ContainerRun:
    spec: Obj
    st: ContainerState
    proc: subprocess.Popen[bytes] | None = None
    next_start: float = 0.0
    backoff: float = 1.0
    started_mono: float = 0.0
    probes: dict[str, ProbeState] = field(default_factory=dict)


def _ready(status: Obj) -> str | None:
    """The status of a pod status's Ready condition."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("status"))
    return None


class PodWorker(threading.Thread):
    def __init__(self, ctx: NodeContext, pod: Obj) -> None:
        meta = pod["metadata"]
        super().__init__(daemon=True, name=f"pod-{meta['namespace']}/{meta['name']}")
        self.ctx = ctx
        self.pod = pod
        self.uid: str = meta["uid"]
        self.host_network = bool(pod["spec"].get("hostNetwork"))
        self.dir = ctx.state_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{self.uid[:8]}"
        self.ip = ""
        self.ns = ""
        self.volumes: dict[str, Path] = {}
        self.init = [
            ContainerRun(c, ContainerState(c["name"], c.get("image", "")))
            for c in pod["spec"].get("initContainers", [])
        ]
        self.main = [
            ContainerRun(c, ContainerState(c["name"], c.get("image", "")))
            for c in pod["spec"]["containers"]
        ]
        self.start_time = now_iso()
        self.failed = False
        self.message = ""
        self.stop_grace: float | None = None
        self.finished = threading.Event()
        self._last_status: Obj | None = None

    # -- called from the agent loop ---------------------------------------------------------
    def update(self, pod: Obj) -> None:
        self.pod = pod
        # Another writer changed our pod's readiness (the node controller marks the pods of a
        # node that stopped reporting not ready): report ours again, or it stays changed.
        if self._last_status is not None and _ready(pod.get("status") or {}) != _ready(
                self._last_status):
            self._last_status = None

    def request_stop(self, grace: float) -> None:
        if self.stop_grace is None:
            self.stop_grace = grace

    # -- the worker thread ------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._setup()
            while self.stop_grace is None:
                self._tick()
                self._report()
                time.sleep(0.5)
        except Exception:
            log.exception("pod %s failed in the agent", self.label)
        finally:
            self._teardown(self.stop_grace or 0.0)
            self.finished.set()

    @property
    def label(self) -> str:
        return f"{self.pod['metadata']['namespace']}/{self.pod['metadata']['name']}"

    def _setup(self) -> None:
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        if self.host_network:
            self.ip = network.GATEWAY
        else:
            self.ip = self.ctx.ips.take()
            hosts = network.pod_hosts(self.pod["metadata"]["name"], self.ip)
            self.ns = network.create_pod_network(self.uid, self.ip, hosts)
        self.pod.setdefault("status", {})["podIP"] = self.ip
        self.pod["status"]["hostIP"] = network.GATEWAY
        log.info("pod %s: ip %s", self.label, self.ip)
        while self.stop_grace is None:
            try:
                self.volumes = materialize(
                    self.ctx.kube, self.pod, self.dir / "volumes", self.ctx.state_dir
                )
                self.message = ""
                return
            except (ConfigError, ApiError) as err:
                self.message = f"volumes: {err}"
                for c in self.init + self.main:
                    c.st.reason, c.st.message = "CreateContainerConfigError", str(err)
                self._report()
                time.sleep(2)

    def _tick(self) -> None:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        for c in self.init:
            if c.st.state == "terminated" and c.st.exit_code == 0:
                continue
            self._step(c, "OnFailure" if policy == "Always" else policy, probes=False)
            if c.st.state == "terminated" and c.st.exit_code != 0 and policy == "Never":
                self.failed = True
                self.message = f"init container {c.st.name} failed"
            return  # one init container at a time, in order
        if self.failed:
            return
        for c in self.main:
            self._step(c, policy, probes=True)

    def _step(self, c: ContainerRun, policy: str, probes: bool) -> None:
        now = time.monotonic()
        if c.proc is None:
            if c.st.state == "terminated" and (
                policy == "Never" or (policy == "OnFailure" and c.st.exit_code == 0)
            ):
                return
            if now >= c.next_start:
                self._start(c)
            return
        code = c.proc.poll()
        if code is not None:
            self._exited(c, code, "Completed" if code == 0 else "Error")
            return
        if probes:
            self._probe(c, now)

    def _start(self, c: ContainerRun) -> None:
        lookup = self._lookup
        try:
            env = container_env(
                self.pod,
                c.spec,
                self.ctx.base_env | {"HOSTNAME": self.pod["metadata"]["name"]},
                lookup,
            )
            # A process cannot write the pod's /dev/termination-log: it gets a file of its own,
            # which the agent turns into the terminated state's message, as a kubelet does.
            termination = self._termination_log(c)
            termination.unlink(missing_ok=True)
            env["KUBERANK_TERMINATION_LOG"] = str(termination)
            argv = command_line(c.spec, env)
            mounts = self._mount_args(c.spec)
        except (ConfigError, ApiError) as err:
            c.st.state, c.st.reason, c.st.message = (
                "waiting",
                "CreateContainerConfigError",
                str(err),
            )
            c.next_start = time.monotonic() + 2
            return
        wrap = (
            ["ip", "netns", "exec", self.ns]
            if self.ns
            else ["unshare", "--mount", "--propagation", "private"]
        )
        spec = {
            "workdir": c.spec.get("workingDir", ""),
            "mounts": mounts,
            "keep": self.ctx.host_paths,
            "argv": argv,
        }
        full = [*wrap, sys.executable, "-I", SHIM, json.dumps(spec)]
        logf = open(self.dir / "logs" / f"{c.st.name}.log", "ab")  # noqa: SIM115 - owned by the child
        logf.write(f"{START_MARK}{now_iso()} start {argv}\n".encode())
        logf.flush()
        c.proc = subprocess.Popen(
            full,
            env=env,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        logf.close()
        c.started_mono = time.monotonic()
        c.probes = {}
        c.st.state, c.st.reason, c.st.message = "running", "", ""
        c.st.started_at, c.st.pid = now_iso(), c.proc.pid
        c.st.started = "startupProbe" not in c.spec
        c.st.ready = False
        log.info("pod %s: started %s pid %d", self.label, c.st.name, c.proc.pid)

    def _termination_log(self, c: ContainerRun) -> Path:
        folder = self.dir / "termination"
        folder.mkdir(exist_ok=True)
        return folder / f"{c.st.name}.log"

    def _termination_message(self, c: ContainerRun, code: int) -> str:
        """What the container wrote to its termination log; on a failure without one, the end
        of its log when the spec says FallbackToLogsOnError (the kubelet's rule)."""
        with contextlib.suppress(OSError):
            if written := self._termination_log(c).read_text(errors="replace")[:4096].strip():
                return written
        if code == 0 or c.spec.get("terminationMessagePolicy") != "FallbackToLogsOnError":
            return ""
        try:
            log_text = (self.dir / "logs" / f"{c.st.name}.log").read_text(errors="replace")
        except OSError:
            return ""
        this_run = log_text[log_text.rfind(START_MARK):].partition("\n")[2]  # after our marker
        return "\n".join(this_run.splitlines()[-20:])[-2048:].strip()

    def _exited(self, c: ContainerRun, code: int, reason: str) -> None:
        c.proc = None
        c.st.state, c.st.exit_code, c.st.reason = "terminated", code, reason
        c.st.message = self._termination_message(c, code)
        c.st.finished_at, c.st.ready, c.st.started = now_iso(), False, False
        log.info("pod %s: %s exited %d", self.label, c.st.name, code)
        restart = self.pod["spec"].get("restartPolicy", "Always")
        if c in self.init and restart == "Always":
            restart = "OnFailure"
        if restart == "Always" or (restart == "OnFailure" and code != 0):
            c.st.last_terminated = c.st.status()["state"]["terminated"]
            c.st.restart_count += 1
            c.st.state, c.st.reason = "waiting", "CrashLoopBackOff"
            c.st.message = ""
            ran = time.monotonic() - c.started_mono
            c.backoff = 1.0 if ran > 60 else min(c.backoff * 2, self.ctx.backoff_cap_s)
            c.next_start = time.monotonic() + c.backoff

    def _mount_args(self, spec: Obj) -> list[list[str]]:
        out: list[list[str]] = []
        for vm in spec.get("volumeMounts", []):
            if vm["name"] not in self.volumes:
                raise ConfigError(f"volume {vm['name']} not defined")
            src = self.volumes[vm["name"]] / vm.get("subPath", "")
            out.append([str(src), vm["mountPath"], "ro" if vm.get("readOnly") else "rw"])
        return out

    def _lookup(self, kind: str, ns: str, name: str) -> Mapping[str, str] | None:
        plural = "secrets" if kind == "secret" else "configmaps"
        obj = self.ctx.kube.get_or_none(f"/api/v1/namespaces/{ns}/{plural}/{name}")
        if obj is None:
            return None
        return secret_data(obj) if kind == "secret" else dict(obj.get("data") or {})

    # -- probes ---------------------------------------------------------------------------
    def _probe(self, c: ContainerRun, now: float) -> None:
        kinds = ["startupProbe"] if not c.st.started else ["livenessProbe", "readinessProbe"]
        if c.st.started and "readinessProbe" not in c.spec:
            c.st.ready = True
        for kind in kinds:
            probe = c.spec.get(kind)
            if not probe:
                continue
            ps = c.probes.setdefault(
                kind, ProbeState(next_at=c.started_mono + probe.get("initialDelaySeconds", 0))
            )
            if now < ps.next_at:
                continue
            ps.next_at = now + probe.get("periodSeconds", 10)
            ok = self._probe_once(c, probe)
            ps.successes, ps.failures = (ps.successes + 1, 0) if ok else (0, ps.failures + 1)
            if kind == "startupProbe" and ok:
                c.st.started = True
            elif kind == "readinessProbe":
                if ok and ps.successes >= probe.get("successThreshold", 1):
                    c.st.ready = True
                elif not ok and ps.failures >= probe.get("failureThreshold", 3):
                    c.st.ready = False
            elif not ok and ps.failures >= probe.get("failureThreshold", 3) and c.proc:
                log.info("pod %s: %s failed %s, restarting", self.label, c.st.name, kind)
                self._kill(c, probe.get("terminationGracePeriodSeconds", 5))
                if c.proc:
                    self._exited(c, c.proc.wait(), "Error")

    def _probe_once(self, c: ContainerRun, probe: Obj) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        try:
            if "httpGet" in probe:
                hg = probe["httpGet"]
                port = probe_port(c.spec, hg["port"])
                url = f"{hg.get('scheme', 'HTTP').lower()}://{self.ip}:{port}{hg.get('path', '/')}"
                with _NO_PROXY.open(url, timeout=timeout) as resp:
                    return 200 <= int(resp.status) < 400
            if "tcpSocket" in probe or "grpc" in probe:
                port = probe_port(c.spec, (probe.get("tcpSocket") or probe["grpc"])["port"])
                with socket.create_connection((self.ip, port), timeout=timeout):
                    return True
            if "exec" in probe:
                wrap = ["ip", "netns", "exec", self.ns] if self.ns else []
                done = subprocess.run(
                    [*wrap, *probe["exec"]["command"]], timeout=timeout, capture_output=True
                )
                return done.returncode == 0
        except (OSError, ConfigError, subprocess.TimeoutExpired):
            return False
        return False

    # -- stopping -------------------------------------------------------------------------
    def _kill(self, c: ContainerRun, grace: float) -> None:
        if c.proc is None or c.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(c.proc.pid, signal.SIGTERM)
        try:
            c.proc.wait(timeout=max(grace, 0.1))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.proc.pid, signal.SIGKILL)
            c.proc.wait()

    def _teardown(self, grace: float) -> None:
        runs = [c for c in self.init + self.main if c.proc and c.proc.poll() is None]
        for c in runs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + grace
        for c in runs:
            assert c.proc is not None
            try:
                c.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.proc.pid, signal.SIGKILL)
                c.proc.wait()
        if self.ns:
            network.delete_pod_network(self.uid)
        if self.ip and not self.host_network:
            self.ctx.ips.give_back(self.ip)
        log.info("pod %s: stopped", self.label)

    # -- status -----------------------------------------------------------------------------
    def _report(self) -> None:
        view = PodView(
            ip=self.ip,
            host_ip=network.GATEWAY,
            start_time=self.start_time,
            init=[c.st for c in self.init],
            main=[c.st for c in self.main],
            failed=self.failed,
            message=self.message,
        )
        previous = self._last_status or self.pod.get("status", {})
        status = pod_status(self.pod, view, previous, now_iso())
        if status == self._last_status:
            return
        meta = self.pod["metadata"]
        try:
            self.ctx.kube.merge_patch(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                {"status": status},
            )
            self._last_status = status
        except ApiError as err:
            log.warning("pod %s: status patch failed: %s", self.label, err)
