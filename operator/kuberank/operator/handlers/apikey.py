# kopf declares its callbacks as Protocols listing every kwarg; handlers that name only the
# kwargs they use (as kopf documents) do not match them structurally, hence arg-type is off here.
# mypy: disable-error-code="arg-type"
"""An ApiKey: mint its key into the Secret it owns, publish the key's id and digest, answer
edits and deletions of that Secret, and flip it to Expired when ``expiresAt`` passes."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from kuberank.crd.apikey import PLURAL as APIKEY_PLURAL
from kuberank.crd.apikey import secret_name
from kuberank.crd.common import GROUP, VERSION
from kuberank.operator.builders.secret import APIKEY_LABEL
from kuberank.operator.drift import data_edited_since_ours
from kuberank.operator.handlers.common import (
    KEY_SECRETS,
    Key,
    KeyedLocks,
    SpecByGeneration,
    announce,
    kopf_error,
    kube_of,
    log,
    now,
    one,
    retry_conflict,
)
from kuberank.operator.kube import FIELD_MANAGER, KubeError
from kuberank.operator.reconcilers import apikey as apikeys
from kuberank.operator.reconcilers.ownership import NameConflictError
from kuberank.operator.status.apikey import (
    expiry_flipped,
    seconds_until_expiry,
    unserved_message,
    unserved_models,
)

REFUSED_RETRY_SECONDS = 30  # a key Secret the API server refused is written again this often

# The spec handler, the Secret's events and the expiry daemon each compute and write one
# ApiKey's status on their own threads: under its lock, from the status this process wrote last
# (watches lag), so none writes back a key id and digest another has just replaced.
_status_locks = KeyedLocks()


def _reconcile(body: dict[str, Any], memo: Any, by_key_id: kopf.Index[str, Any]) -> None:
    kube = kube_of(memo)
    try:
        spec = apikeys.parse_spec(body.get("spec"))
    except apikeys.InvalidApiKeyError as err:
        raise kopf.PermanentError(f"invalid spec: {err}") from err
    meta = body["metadata"]
    try:
        with _status_locks.hold((meta["namespace"], meta["name"])):
            body = apikeys.with_written_status(body)
            try:
                minted = apikeys.ensure_key(kube, body,
                                            lambda key_id: list(by_key_id.get(key_id) or []))
            except NameConflictError as err:
                if not err.predecessor:
                    status = apikeys.desired_status(body, spec, None, now(), conflict=str(err))
                    announce(body, apikeys.publish_status(kube, body, status), "Active")
                raise retry_conflict(err) from err
            except apikeys.SecretRefusedError as err:
                status = apikeys.desired_status(body, spec, None, now(), refused=err)
                announce(body, apikeys.publish_status(kube, body, status), "Active")
                # Retried (kopf keeps the change unhandled): one the server takes later, once
                # its policy or the Secret is fixed, is carried out without another edit.
                raise kopf.TemporaryError(str(err), delay=REFUSED_RETRY_SECONDS) from err
            status = apikeys.desired_status(body, spec, minted, now())
            changed = apikeys.publish_status(kube, body, status)
    except KubeError as err:
        if err.namespace_ending:  # its Secret deleted with its namespace: so is the key
            return
        raise kopf_error(err) from err
    for kind, reason, message in apikeys.key_events(minted, secret_name(meta["name"])):
        if kind == "Warning":  # a change of key nobody asked for: in the log too
            log.warning("ApiKey %s/%s: %s", meta["namespace"], meta["name"], message)
        kopf.event(body, type=kind, reason=reason, message=message)
    announce(body, changed, "Active")


@kopf.on.resume(GROUP, VERSION, APIKEY_PLURAL, id="reconcile")
@kopf.on.create(GROUP, VERSION, APIKEY_PLURAL, id="reconcile")
@kopf.on.update(GROUP, VERSION, APIKEY_PLURAL, id="reconcile")
def reconcile_apikey(body: kopf.Body, memo: Any, apikey_by_key_id: kopf.Index[str, Any],
                     namespace_index: kopf.Index[str, Any], reason: str, diff: kopf.Diff,
                     namespace: str, **_: Any) -> None:
    _reconcile(dict(body), memo, apikey_by_key_id)
    # When spec.models is written (not at every operator start): a name no model serves.
    if reason == "create" or any(field[:2] == ("spec", "models") for _, field, *_ in diff):
        try:
            spec = apikeys.parse_spec(body.get("spec"))
        except apikeys.InvalidApiKeyError:
            return  # _reconcile has refused it
        unserved = unserved_models(spec, namespace_index.get(namespace) or [])
        if unserved:
            kopf.event(body, type="Warning", reason="UnknownModel",
                       message=unserved_message(unserved, namespace))


@kopf.index(GROUP, VERSION, APIKEY_PLURAL)
def apikey_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, name): dict(body)}


@kopf.index(GROUP, VERSION, APIKEY_PLURAL)
def apikey_by_key_id(body: kopf.Body, **_: Any) -> dict[str, Any]:
    """ApiKeys by the key id they publish: who else holds a key written into a Secret (an
    empty dict, not None, for none yet: kopf keeps an object's old entries on None)."""
    key_id = (body.get("status") or {}).get("keyId")
    return {str(key_id): dict(body)} if key_id else {}


@kopf.on.event("v1", "secrets", labels=KEY_SECRETS)
def secret_event(
    event: kopf.RawEvent,
    labels: kopf.Labels,
    namespace: str,
    body: kopf.Body,
    memo: Any,
    apikey_index: kopf.Index[Key, Any],
    apikey_by_key_id: kopf.Index[str, Any],
    **_: Any,
) -> None:
    """A deleted key Secret is re-minted (the old key is gone; clients need the new one). One
    whose key someone else edited is taken as the key from now on (its id and digest are
    published, so the gateway accepts what the Secret says), or re-minted when it holds no key;
    the events of the operator's own writes are not answered (a rotation would mint twice)."""
    edited = event.get("type") == "MODIFIED" and data_edited_since_ours(body, FIELD_MANAGER)
    if event.get("type") != "DELETED" and not edited:
        return
    owner = one(apikey_index, (namespace, labels[APIKEY_LABEL]))
    if owner is not None and not owner["metadata"].get("deletionTimestamp"):
        _reconcile(owner, memo, apikey_by_key_id)


@kopf.daemon(GROUP, VERSION, APIKEY_PLURAL, id="expiry", cancellation_timeout=1.0)
async def expiry_clock(body: kopf.Body, memo: Any, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Flip Active/Expired when expiresAt passes, without waiting for any other change; every
    other change of status is the spec handler's."""
    parsed = SpecByGeneration(apikeys.parse_spec, apikeys.InvalidApiKeyError)
    while not stopped:
        spec = parsed.of(body)
        if spec is None:
            await stopped.wait(60)
            continue
        until = seconds_until_expiry(spec, now())
        # Short naps: a spec edit that moves expiresAt closer is honoured within seconds.
        await stopped.wait(min(until + 0.05, 5.0) if until is not None else 5.0)
        # Most naps end with nothing to flip: looked at here, without a thread hop per key
        # every 5 s (12 % of a core with 1,000 idle keys); _publish_expiry looks again under
        # the key's lock before it writes.
        spec = parsed.of(body)  # as it is now, after the nap
        if stopped or spec is None or not expiry_flipped(
                spec, apikeys.with_written_status(dict(body)).get("status") or {}, now()):
            continue
        try:
            await asyncio.to_thread(_publish_expiry, memo, body)
        except KubeError as err:
            log.warning("expiry status update failed: %s", err.message)


def _publish_expiry(memo: Any, live: kopf.Body) -> None:
    """Under the key's lock, from the object as it is then (kopf keeps ``live`` current): a
    spec edit handled while this waited for the lock is what it sees, not the spec before."""
    key = (live["metadata"]["namespace"], live["metadata"]["name"])
    with _status_locks.hold(key):
        body = apikeys.with_written_status(dict(live))
        try:
            spec = apikeys.parse_spec(body.get("spec"))
        except apikeys.InvalidApiKeyError:
            return
        moment = now()
        if not expiry_flipped(spec, body.get("status") or {}, moment):
            return
        status = apikeys.desired_status(body, spec, None, moment)
        changed = apikeys.publish_status(kube_of(memo), body, status)
    announce(body, changed, "Active")
