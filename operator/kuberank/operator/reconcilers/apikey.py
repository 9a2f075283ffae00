"""Mint, keep and rotate an ApiKey's secret; publish only its id and salted digest."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kuberank.crd import reasons
from kuberank.crd.apikey import (
    KIND,
    ROTATE_ANNOTATION,
    SECRET_FIELD,
    ApiKeySpec,
    secret_name,
)
from kuberank.crd.common import validation_problems
from kuberank.crd.keys import (
    ParsedKey,
    digest_secret,
    generate_key,
    parse_key,
    verify_secret,
)
from kuberank.operator.builders.meta import Owner
from kuberank.operator.builders.secret import (
    build_secret,
    key_from_secret,
    labels_taken_off,
    minted_for,
)
from kuberank.operator.drift import data_edited_since_ours
from kuberank.operator.kube import FIELD_MANAGER, Kube, KubeError, Ref
from kuberank.operator.reconcilers import publish
from kuberank.operator.reconcilers.ownership import claimed
from kuberank.operator.status.apikey import compute_status
from pydantic import ValidationError


class InvalidApiKeyError(ValueError):
    """A spec the operator cannot use, with the offending fields."""


class SecretRefusedError(Exception):
    """The API server refused to store a newly minted key (an admission policy, an immutable
    Secret, a quota): the key it was to replace is no longer to be accepted either."""

    def __init__(self, secret: str, why: str, rotation: str | None) -> None:
        super().__init__(f"the API server refused Secret {secret}: {why}")
        self.secret, self.why, self.rotation = secret, why, rotation

    def message(self, key_id: str | None) -> str:
        """For the Active condition and the Warning Event (``key_id``: the key published so
        far, which the gateway stops accepting)."""
        asked = (f"The rotation asked for (kuberank.io/rotate={self.rotation}) could not be "
                 "stored" if self.rotation is not None else "A new key could not be stored")
        before = (f"; key id {key_id} is no longer accepted either, as the new key would have "
                  "replaced it" if key_id else "")
        return (f"{asked}: the API server refused Secret {self.secret}: {self.why}. No key of "
                f"this ApiKey is accepted until one can be stored{before}. Fix what the API "
                "server names; the operator retries every 30 s.")


@dataclass(frozen=True)
class Minted:
    key_id: str
    digest: str
    rotation: str | None
    rotated: bool
    # The key id a minted key replaced without anyone asking (its Secret was deleted or
    # emptied): its clients now get 401, which deserves a Warning.
    lost: str | None = None
    # The key id that a key written into the Secret by someone else (carried over from another
    # cluster, restored, edited) replaced: taken as the key, and its clients get 401 too.
    overwritten: str | None = None
    # "namespace/name" of the ApiKey whose very key someone wrote into this one's Secret: not
    # taken (a fresh key was minted), or one tenant could take the other's requests.
    copied_from: str | None = None
    # "namespace/name" of another ApiKey that publishes this one's key too (the gateway refuses
    # it for both until one is rotated).
    shared_with: str | None = None


def key_events(minted: Minted, secret: str) -> list[tuple[str, str, str]]:
    """The Events (type, reason, message) of what happened to a key: a rotation asked for, or
    a Warning for each change nobody asked the operator for, naming the key ids clients lost
    (pure; ``secret`` is the Secret's name)."""
    events = []
    if minted.rotated:
        events.append(("Normal", "Rotated", f"New key id {minted.key_id}."))
    if minted.copied_from:
        gone = (f"; key id {minted.lost} is gone and its clients get 401 until they use the "
                "new one" if minted.lost else "")
        events.append(("Warning", "KeyReplaced", f"Secret {secret} held the key of ApiKey "
                       f"{minted.copied_from}, and no two ApiKeys may share a key (the gateway "
                       f"refuses a key two of them hold), so a new key (id {minted.key_id}) "
                       f"was minted{gone}."))
    elif minted.lost:
        events.append(("Warning", "KeyReplaced", f"Secret {secret} was deleted or held no "
                       f"kuberank key, so a new key (id {minted.key_id}) was minted; key id "
                       f"{minted.lost} is gone and its clients get 401 until they use the new "
                       "one."))
    if minted.shared_with:
        events.append(("Warning", "KeyShared", f"ApiKey {minted.shared_with} publishes this "
                       f"very key (id {minted.key_id}) too, so the gateway refuses it for both: "
                       "annotate kuberank.io/rotate on the one that should get a new key."))
    if minted.overwritten:
        lost = (f"key id {minted.overwritten} is gone" if minted.overwritten != minted.key_id
                else "the key it had under that id is gone")
        events.append(("Warning", "KeyChanged", f"Secret {secret} now holds a key this "
                       f"operator did not mint (id {minted.key_id}), which is taken as the key; "
                       f"{lost} and its clients get 401. Annotate kuberank.io/rotate to mint a "
                       "new one."))
    return events


def parse_spec(raw: Any) -> ApiKeySpec:
    try:
        return ApiKeySpec.model_validate(raw or {})
    except ValidationError as err:
        raise InvalidApiKeyError(validation_problems(err, prefix="spec.")) from err


def copied_from(parsed: ParsedKey, uid: str, others: Iterable[Mapping[str, Any]]) -> str | None:
    """Another live ApiKey that publishes this very key, id and secret, as "namespace/name".
    Pure."""
    for other in others:
        meta, status = other.get("metadata") or {}, other.get("status") or {}
        if (meta.get("uid") != uid and not meta.get("deletionTimestamp")
                and _published_here(parsed, status)):
            return f"{meta.get('namespace')}/{meta.get('name')}"
    return None


def ensure_key(kube: Kube, body: dict[str, Any],
               published: Callable[[str], Iterable[Mapping[str, Any]]] = lambda _: ()) -> Minted:
    """Keep the stored key unless it is missing, malformed, another ApiKey's (``published``:
    the ApiKeys that publish a key id) written into this one's Secret, or a rotation is
    requested; never touch a Secret of that name that this ApiKey does not control
    (NameConflictError)."""
    meta = body["metadata"]
    status = body.get("status") or {}
    owner = Owner(kind=KIND, name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
    ref = Ref("v1", "Secret", owner.namespace, secret_name(owner.name))
    wanted_rotation = (meta.get("annotations") or {}).get(ROTATE_ANNOTATION)
    rotate = wanted_rotation is not None and wanted_rotation != status.get("rotation")
    secret = claimed(kube, ref, owner)
    parsed = parse_key(key_from_secret(secret) or "")
    # Whoever publishes a key first keeps it: one new to this ApiKey that another publishes is
    # not taken (decided on status, which only the operator writes, not on managedFields, which
    # a client may spoof). One already published here that another publishes too (two
    # reconciles that raced) is said, for a person to settle: the gateway refuses it for both.
    copied = shared = None
    here = parsed is not None and _published_here(parsed, status)
    # A key minted for this very rotation that the status never published (the operator was
    # stopped in between) is that rotation's key: clients may have read it already. (This
    # trusts managedFields and the annotation, which a writer of the Secret could forge; such a
    # writer can plant a key anyway, with a KeyChanged warning: forging gains only silence.)
    resumed = (rotate and parsed is not None and not here and secret is not None
               and minted_for(secret) == wanted_rotation
               and not data_edited_since_ours(secret, FIELD_MANAGER, SECRET_FIELD))
    if parsed is not None and (resumed or not rotate):
        holder = copied_from(parsed, str(meta.get("uid")), published(parsed.key_id))
        if holder is not None and here:
            shared = holder
        elif holder is not None:
            copied, parsed = holder, None  # as good as no key: a fresh one is minted
    lost = status.get("keyId") if parsed is None and not rotate else None
    overwritten = None
    if parsed is None or (rotate and not resumed):
        key = generate_key()
        try:
            kube.apply(build_secret(owner, key, wanted_rotation if rotate else None))
        except KubeError as err:
            if err.transient or err.namespace_ending:
                raise
            raise SecretRefusedError(ref.name, err.message,
                                     wanted_rotation if rotate else None) from err
        parsed = parse_key(key)
        assert parsed is not None
        digest = digest_secret(parsed.secret)
    else:
        digest = status.get("digest") or ""
        if not here:
            digest = digest_secret(parsed.secret)
            # Written by someone else, not the operator's own write whose status did not land:
            # then a published key is lost (none published yet: nothing is).
            if secret is not None and data_edited_since_ours(secret, FIELD_MANAGER,
                                                             SECRET_FIELD):
                overwritten = status.get("keyId") or None
        if secret is not None and (taken_off := labels_taken_off(secret, owner)):
            # Its label removed, the Secret left the watch (as a deletion, which brought us
            # here): put back, its next deletion or edit is answered again (gone meanwhile: that
            # deletion is answered like any other).
            kube.merge_patch(ref, {"metadata": {"labels": taken_off}})
    rotation = wanted_rotation if wanted_rotation is not None else status.get("rotation")
    return Minted(parsed.key_id, digest, rotation, rotated=rotate, lost=lost or None,
                  overwritten=overwritten, copied_from=copied, shared_with=shared)


def _published_here(parsed: ParsedKey, status: Mapping[str, Any]) -> bool:
    return status.get("keyId") == parsed.key_id and verify_secret(
        parsed.secret, str(status.get("digest") or ""))


def desired_status(
    body: dict[str, Any], spec: ApiKeySpec, minted: Minted | None, now: datetime,
    conflict: str | None = None, refused: SecretRefusedError | None = None,
) -> dict[str, Any]:
    """Status from the spec and the key minted (pure); ``conflict`` says why no key could be
    stored (its Secret's name is held by an object this ApiKey does not control), ``refused``
    that the API server refused the Secret of a new key: then no key is published (null
    clears the published one in the status' merge patch), as the new key would have
    replaced it."""
    meta = body["metadata"]
    status = body.get("status") or {}
    blocked = (("NameConflict", conflict) if conflict is not None else
               (reasons.CHILD_REFUSED, refused.message(status.get("keyId"))) if refused is not None
               else None)
    computed = compute_status(
        spec,
        int(meta.get("generation") or 0),
        None if refused else minted.key_id if minted else status.get("keyId"),
        None if refused else minted.digest if minted else status.get("digest"),
        secret_name(meta["name"]),
        minted.rotation if minted else status.get("rotation"),
        status,
        now,
        blocked,
    )
    return {**computed, "keyId": None, "digest": None} if refused else computed


with_written_status = publish.with_written_status


def publish_status(
    kube: Kube, body: dict[str, Any], status: dict[str, Any]
) -> list[dict[str, Any]]:
    """Patch the status if it differs; returns the conditions that transitioned."""
    return publish.publish_status(kube, KIND, body, status)
