"""A small JSON client for the Kubernetes API (stdlib only).

The agent talks to the API server the way a kubelet does: raw objects as dicts, merge patches on
the status subresource. A typed client would add nothing but conversions.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]


UNREACHABLE = 0  # ApiError.status when no answer came at all


class ApiError(Exception):
    """An HTTP error answered by the API server, or none (``UNREACHABLE``)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body[:300]}")
        self.status = status


@dataclass
class Kube:
    server: str
    token: str | None
    context: ssl.SSLContext
    ca_pem: bytes

    @classmethod
    def from_kubeconfig(cls, path: str | Path) -> Kube:
        """Read the current context's cluster and user (token or client certificate)."""
        cfg = yaml.safe_load(Path(path).read_text())
        ctx_name = cfg.get("current-context") or cfg["contexts"][0]["name"]
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user: dict[str, Any] = next(
            (u["user"] for u in cfg.get("users", []) if u["name"] == ctx.get("user")), {}
        )
        ca_pem = _pem(cluster, "certificate-authority")
        context = ssl.create_default_context()
        if cluster.get("insecure-skip-tls-verify"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif ca_pem:
            context = ssl.create_default_context(cadata=ca_pem.decode())
        cert, key = _pem(user, "client-certificate"), _pem(user, "client-key")
        if cert and key:
            tmp = Path(tempfile.mkdtemp(prefix="nodeagent-tls-"))
            (tmp / "c.pem").write_bytes(cert)
            (tmp / "k.pem").write_bytes(key)
            context.load_cert_chain(tmp / "c.pem", tmp / "k.pem")
        return cls(cluster["server"].rstrip("/"), user.get("token"), context, ca_pem or b"")

    def request(
        self,
        method: str,
        path: str,
        body: Obj | None = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> Obj:
        url = self.server + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, context=self.context, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raise ApiError(err.code, err.read().decode(errors="replace")) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            # The API server is down or restarting: an error like any other answer, which the
            # callers retry, not one that ends a pod's worker (leaving a pod "Running" for ever).
            raise ApiError(UNREACHABLE, f"API server unreachable: {err}") from None
        return json.loads(raw) if raw else {}

    def get(self, path: str, **query: str) -> Obj:
        return self.request("GET", path, query=query or None)

    def create(self, path: str, body: Obj) -> Obj:
        return self.request("POST", path, body)

    def merge_patch(self, path: str, body: Obj) -> Obj:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path: str, body: Obj | None = None) -> Obj:
        return self.request("DELETE", path, body)

    def get_or_none(self, path: str) -> Obj | None:
        try:
            return self.get(path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise


def _pem(section: dict[str, Any], key: str) -> bytes | None:
    if section.get(f"{key}-data"):
        return base64.b64decode(section[f"{key}-data"])
    if section.get(key):
        return Path(section[key]).read_bytes()
    return None
