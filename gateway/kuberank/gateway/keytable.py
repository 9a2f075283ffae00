"""The in-memory table of API keys the gateway accepts, fed by the ApiKey watch.

Lookups are by the public key id; the secret is checked against the published salted digest
in constant time. Expiry and the disabled flag are evaluated per request (not when the watch
event arrives), so an expiry takes effect at its instant even if no event ever comes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kuberank.crd.apikey import expired_at, model_allowed, parse_spec
from kuberank.crd.keys import digest_secret, parse_key, verify_secret
from kuberank.gateway.grouped import Grouped
from pydantic import ValidationError

# Verified against when the id is unknown, so unknown and wrong keys cost the same time.
_DUMMY_DIGEST = digest_secret("0" * 32, "0" * 32)


class AuthError(Exception):
    """Why a presented key was refused; the message is safe to show (it holds no key material)."""


@dataclass(frozen=True)
class KeyRecord:
    """What the gateway needs from one ApiKey object."""

    namespace: str
    name: str
    key_id: str
    digest: str
    models: frozenset[str]
    expires_at: datetime | None = None
    disabled: bool = False
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_requests: int | None = None

    @property
    def identity(self) -> str:
        """Whose limits and in-flight count a request uses: the ApiKey object, not its id, so
        a rotated key keeps its budget and a shared id never shares one."""
        return f"{self.namespace}/{self.name}"

    def allows(self, served_name: str) -> bool:
        return model_allowed(self.models, served_name)

    def expired(self, now: datetime) -> bool:
        return expired_at(self.expires_at, now)


def record_from_apikey(obj: Mapping[str, Any]) -> KeyRecord | None:
    """An ApiKey object (as the API server returns it) → record; None until the operator has
    published status.keyId and status.digest, when the object is malformed, or once it is being
    deleted: ``kubectl delete`` only marks a key while its finalizer waits for the operator
    (which may be down for minutes), and a key revoked by deleting it must stop working then."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    key_id, digest = status.get("keyId"), status.get("digest")
    if not key_id or not digest or not meta.get("name") or not meta.get("namespace"):
        return None
    if meta.get("deletionTimestamp"):
        return None
    try:
        spec = parse_spec(obj.get("spec") or {})
    except ValidationError:
        return None
    limits = spec.rate_limit
    return KeyRecord(
        namespace=str(meta["namespace"]),
        name=str(meta["name"]),
        key_id=str(key_id),
        digest=str(digest),
        models=frozenset(spec.models),
        expires_at=spec.expires_at,
        disabled=spec.disabled,
        requests_per_minute=limits.requests_per_minute if limits else None,
        tokens_per_minute=limits.tokens_per_minute if limits else None,
        concurrent_requests=limits.concurrent_requests if limits else None,
    )


class KeyTable:
    """Key id → records, indexed by (namespace, name) too so rotation and deletion drop the old id.

    An id is public (status.keyId, metrics labels) and a key's owner may put any key into its
    Secret, so two ApiKeys can publish the same id: each keeps its record and the secret decides
    which one a presented key is. An id can never be taken over to lock another tenant out;
    a whole key (secret too) that two ApiKeys publish is refused for both (``authenticate``).
    Written by a watch thread, read by the event loop: every access holds the lock briefly.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: Grouped[KeyRecord, str] = Grouped(lambda r: r.key_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def upsert(self, record: KeyRecord) -> None:
        with self._lock:
            self._records.put(record)

    def remove(self, namespace: str, name: str) -> None:
        with self._lock:
            self._records.drop((namespace, name))

    def replace_all(self, records: Iterable[KeyRecord], namespace: str | None = None) -> None:
        """Install a fresh list; with ``namespace`` only that namespace's keys are replaced."""
        with self._lock:
            self._records.replace(
                records, lambda where, _: namespace is None or where[0] == namespace)

    def key_ids(self) -> set[tuple[str, str]]:
        """Every ``(key id, namespace)`` a watched ApiKey publishes."""
        with self._lock:
            return {(r.key_id, r.namespace) for r in self._records.values()}

    def get(self, key_id: str) -> list[KeyRecord]:
        """Every record publishing ``key_id`` (usually one)."""
        with self._lock:
            return self._records.group(key_id)

    def authenticate(self, presented: str | None, now: datetime) -> KeyRecord:
        """The record for a presented key, or AuthError saying why it is refused."""
        if not presented:
            raise AuthError("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key'")
        parsed = parse_key(presented)
        if parsed is None:
            raise AuthError("invalid API key")
        candidates = self.get(parsed.key_id)
        if not candidates:
            verify_secret(parsed.secret, _DUMMY_DIGEST)  # unknown and wrong keys cost the same
            raise AuthError("invalid API key")
        # Each candidate is checked (in constant time) so the work does not say which matched.
        matching = [r for r in candidates if verify_secret(parsed.secret, r.digest)]
        if not matching:
            raise AuthError("invalid API key")
        if len(matching) > 1:
            # The whole key copied into another ApiKey's Secret (the operator re-mints such a
            # copy at once): whichever record won would send one tenant's requests, queries
            # and all, to the other tenant's models. Neither is taken meanwhile.
            raise AuthError("API key is held by more than one ApiKey; it is refused until "
                            "only one holds it")
        record = matching[0]
        if record.disabled:
            raise AuthError("API key is disabled")
        if record.expired(now):
            raise AuthError("API key has expired")
        return record


def presented_key(authorizations: Sequence[str], x_api_keys: Sequence[str]) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key`` (each header as often as
    it came); an Authorization header of another form (a bare key, Basic) is refused as such
    rather than reported missing. Two different keys are one too many, in two headers or in
    one header sent twice (a proxy that appends its own rather than replacing the client's),
    unless only one has a kuberank key's form (a proxy in front may put a token of its own into
    Authorization). Header values are never echoed: they may be keys."""
    bearers = []
    for authorization in authorizations:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            bearers.append(value.strip())
    keys = list(dict.fromkeys([*bearers, *(k.strip() for k in x_api_keys if k.strip())]))
    if len(keys) > 1:
        ours = [k for k in keys if parse_key(k) is not None]
        if len(ours) != 1:
            raise AuthError("two different keys were sent (Authorization, X-API-Key, or one of "
                            "them twice): send one")
        return ours[0]
    if keys:
        return keys[0]
    if any(authorization.strip() for authorization in authorizations):
        raise AuthError("the Authorization header must be 'Bearer <key>'")
    return None
