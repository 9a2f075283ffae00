"""The gateway's key table: which presented keys it accepts, and why it refuses the others."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kuberank.crd.keys import digest_secret, generate_key, parse_key
from kuberank.gateway.keytable import (
    AuthError,
    KeyTable,
    presented_key,
    record_from_apikey,
)
from kuberank.gateway.watch import ApiKeySink

pytestmark = pytest.mark.unit

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
KEY_A, KEY_B = generate_key(), generate_key()


def apikey(key: str, name: str = "team-a", namespace: str = "ns1", **spec: Any) -> dict[str, Any]:
    parsed = parse_key(key)
    assert parsed is not None
    return {
        "apiVersion": "kuberank.io/v1alpha1",
        "kind": "ApiKey",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
        "status": {"keyId": parsed.key_id, "digest": digest_secret(parsed.secret)},
    }


def table_with(*objects: dict[str, Any]) -> KeyTable:
    table = KeyTable()
    for obj in objects:
        record = record_from_apikey(obj)
        assert record is not None
        table.upsert(record)
    return table


def test_a_published_key_authenticates_to_its_record() -> None:
    key = generate_key()
    record = table_with(apikey(key, models=["bge"])).authenticate(key, NOW)
    assert (record.namespace, record.name, record.models) == ("ns1", "team-a", frozenset({"bge"}))


def test_missing_malformed_unknown_and_wrong_secret_keys_are_refused() -> None:
    key = generate_key()
    table = table_with(apikey(key))
    parsed = parse_key(key)
    assert parsed is not None
    wrong_secret = f"kr_{parsed.key_id}_{'0' * 32}"
    for presented in (None, "", "not-a-key", generate_key(), wrong_secret):
        with pytest.raises(AuthError):
            table.authenticate(presented, NOW)


def test_refusal_messages_never_contain_the_presented_key() -> None:
    key = generate_key()
    table = table_with(apikey(key, disabled=True))
    for presented in (key, generate_key()):
        with pytest.raises(AuthError) as refused:
            table.authenticate(presented, NOW)
        assert presented not in str(refused.value)
        assert presented.split("_")[2] not in str(refused.value)


def test_disabled_key_is_refused() -> None:
    key = generate_key()
    with pytest.raises(AuthError, match="disabled"):
        table_with(apikey(key, disabled=True)).authenticate(key, NOW)


def test_expiry_is_evaluated_at_request_time() -> None:
    key = generate_key()
    expires = NOW + timedelta(seconds=5)
    table = table_with(apikey(key, expiresAt=expires.isoformat().replace("+00:00", "Z")))
    assert table.authenticate(key, NOW).key_id
    with pytest.raises(AuthError, match="expired"):
        table.authenticate(key, expires)


def test_key_without_published_status_is_not_a_record() -> None:
    obj = apikey(generate_key())
    obj["status"] = {}
    assert record_from_apikey(obj) is None


def test_a_key_being_deleted_stops_working_before_its_finalizer_is_done() -> None:
    """The operator's finalizer keeps a deleted ApiKey in the API server until the operator
    runs: its key is revoked as soon as it is marked, on a watch event and on a relist."""
    key = generate_key()
    obj = apikey(key)
    table = KeyTable()
    sink = ApiKeySink(table)
    sink.apply("ADDED", obj)
    assert table.authenticate(key, NOW).name == "team-a"
    deleting = {**obj, "metadata": {**obj["metadata"], "finalizers": ["kuberank.io/operator"],
                                    "deletionTimestamp": "2026-05-01T11:59:00Z"}}
    sink.apply("MODIFIED", deleting)
    with pytest.raises(AuthError):
        table.authenticate(key, NOW)
    sink.replace([obj], None)
    assert table.authenticate(key, NOW)
    sink.replace([deleting], None)
    with pytest.raises(AuthError):
        table.authenticate(key, NOW)


def test_missing_models_means_every_model_as_the_crd_defaults() -> None:
    record = record_from_apikey(apikey(generate_key()))
    assert record is not None and record.allows("anything")


def test_invalid_spec_is_ignored_rather_than_crashing_the_watch() -> None:
    obj = apikey(generate_key())
    obj["spec"] = {"models": "not-a-list", "rateLimit": {"requestsPerMinute": -3}}
    assert record_from_apikey(obj) is None


def test_rate_limits_are_read_from_the_spec() -> None:
    record = record_from_apikey(
        apikey(generate_key(), rateLimit={"requestsPerMinute": 60, "tokensPerMinute": 1000})
    )
    assert record is not None
    assert (record.requests_per_minute, record.tokens_per_minute) == (60, 1000)


def test_rotation_replaces_the_old_key_id() -> None:
    old, new = generate_key(), generate_key()
    table = table_with(apikey(old))
    rotated = record_from_apikey(apikey(new))
    assert rotated is not None
    table.upsert(rotated)
    assert table.authenticate(new, NOW).name == "team-a"
    with pytest.raises(AuthError):
        table.authenticate(old, NOW)
    assert len(table) == 1


def test_removing_an_object_revokes_its_key() -> None:
    key = generate_key()
    table = table_with(apikey(key))
    table.remove("ns1", "team-a")
    with pytest.raises(AuthError):
        table.authenticate(key, NOW)


def test_replace_all_in_one_namespace_keeps_other_namespaces() -> None:
    a, b, c = generate_key(), generate_key(), generate_key()
    table = table_with(apikey(a, namespace="ns1"), apikey(b, name="other", namespace="ns2"))
    fresh = record_from_apikey(apikey(c, name="fresh", namespace="ns1"))
    assert fresh is not None
    table.replace_all([fresh], namespace="ns1")
    assert table.authenticate(b, NOW).namespace == "ns2"
    assert table.authenticate(c, NOW).name == "fresh"
    with pytest.raises(AuthError):
        table.authenticate(a, NOW)


def listed(header: str | None) -> list[str]:
    """A header's values as the gateway reads them: none, or each time it came."""
    return [] if header is None else [header]


@pytest.mark.parametrize(
    ("authorization", "x_api_key", "expected"),
    [
        ("Bearer kr_abc", None, "kr_abc"),
        ("bearer   kr_abc  ", None, "kr_abc"),
        (None, "kr_xyz", "kr_xyz"),
        ("Basic dXNlcjpwYXNz", "kr_xyz", "kr_xyz"),
        ("  ", None, None),
        (None, None, None),
        (f"Bearer {KEY_A}", KEY_A, KEY_A),  # the same key twice is one key
        ("Bearer eyJhbGciOi.proxy.token", KEY_A, KEY_A),  # a proxy's token is not ours
        (f"Bearer {KEY_A}", "an-upstream-secret", KEY_A),
    ],
)
def test_presented_key_comes_from_bearer_or_x_api_key(
    authorization: str | None, x_api_key: str | None, expected: str | None
) -> None:
    assert presented_key(listed(authorization), listed(x_api_key)) == expected


@pytest.mark.parametrize(("authorization", "x_api_key"), [
    (f"Bearer {KEY_A}", KEY_B), ("Bearer one-thing", "another-thing")])
def test_two_different_keys_are_refused_rather_than_one_picked(
    authorization: str, x_api_key: str
) -> None:
    """Which one the client meant cannot be told; a 401 that says so beats one for a key it
    did not think it sent."""
    with pytest.raises(AuthError, match="two different keys were sent") as refused:
        presented_key([authorization], [x_api_key])
    assert KEY_A not in str(refused.value) and "thing" not in str(refused.value)


@pytest.mark.parametrize(("authorizations", "x_api_keys"), [
    ([f"Bearer {KEY_A}", f"Bearer {KEY_B}"], []),
    ([], [KEY_A, KEY_B]),
    ([f"Bearer {KEY_A}"], [KEY_A, KEY_B]),
], ids=["authorization-twice", "x-api-key-twice", "x-api-key-twice-beside-authorization"])
def test_a_header_sent_twice_with_two_keys_is_refused_rather_than_its_first_used(
    authorizations: list[str], x_api_keys: list[str]
) -> None:
    """The first was used: a proxy that appends its own Authorization rather than replacing
    the client's had the headers' order pick the tenant."""
    with pytest.raises(AuthError, match="two different keys were sent"):
        presented_key(authorizations, x_api_keys)


@pytest.mark.parametrize(("authorizations", "x_api_keys", "expected"), [
    ([f"Bearer {KEY_A}", f"Bearer {KEY_A}"], [], KEY_A),
    (["Bearer eyJhbGciOi.proxy.token", f"Bearer {KEY_A}"], [], KEY_A),
    (["Basic dXNlcjpwYXNz", f"Bearer {KEY_A}"], [KEY_A], KEY_A),
], ids=["one-key-twice", "a-proxys-token-beside-ours", "basic-beside-ours"])
def test_a_repeated_header_with_one_kuberank_key_presents_that_key(
    authorizations: list[str], x_api_keys: list[str], expected: str
) -> None:
    assert presented_key(authorizations, x_api_keys) == expected


@pytest.mark.parametrize("authorization", ["kr_0123456789abcdef_secretsecret", "Bearer ",
                                           "Basic dXNlcjpwYXNz", "Token kr_abc"])
def test_an_authorization_header_that_is_not_bearer_is_refused_as_such(
    authorization: str
) -> None:
    with pytest.raises(AuthError, match="must be 'Bearer <key>'") as refused:
        presented_key([authorization], [])
    assert "secret" not in str(refused.value) and "dXNl" not in str(refused.value)


def test_a_key_id_published_twice_locks_nobody_out() -> None:
    """A tenant may put any key into its own Secret, so it can publish another tenant's (public)
    key id. Both records stay; each secret finds its own, whichever was written last."""
    victim_key = generate_key()
    parsed = parse_key(victim_key)
    assert parsed is not None
    forged_key = f"kr_{parsed.key_id}_{'f' * 32}"
    victim = apikey(victim_key, name="prod", namespace="team-b")
    forger = apikey(forged_key, name="mine", namespace="team-a")
    table = table_with(victim, forger)
    assert len(table) == 2
    assert table.authenticate(victim_key, NOW).namespace == "team-b"
    assert table.authenticate(forged_key, NOW).namespace == "team-a"
    with pytest.raises(AuthError, match="invalid API key"):
        table.authenticate(f"kr_{parsed.key_id}_{'0' * 32}", NOW)
    table.remove("team-a", "mine")
    assert table.authenticate(victim_key, NOW).namespace == "team-b"
    with pytest.raises(AuthError):
        table.authenticate(forged_key, NOW)
    # A relist that lists only the victim's namespace leaves the other's record alone too.
    table.upsert(record_from_apikey(forger))  # type: ignore[arg-type]
    table.replace_all([record_from_apikey(victim)], namespace="team-b")  # type: ignore[list-item]
    assert table.authenticate(victim_key, NOW).namespace == "team-b"
    assert table.authenticate(forged_key, NOW).namespace == "team-a"


def test_a_whole_key_held_by_two_apikeys_reaches_neither_namespace() -> None:
    """A tenant who copies another's whole key into its own Secret must not get the other's
    requests: while two records match, the key is refused (the operator re-mints the copy)."""
    key = generate_key()
    table = table_with(apikey(key, name="prod", namespace="team-b"),
                       apikey(key, name="thief", namespace="aaa"))
    with pytest.raises(AuthError, match="held by more than one ApiKey"):
        table.authenticate(key, NOW)
    table.remove("aaa", "thief")
    assert table.authenticate(key, NOW).namespace == "team-b"


def test_records_name_their_apikey_object_as_the_limit_holder() -> None:
    key = generate_key()
    record = table_with(apikey(key, name="prod", namespace="team-b")).authenticate(key, NOW)
    assert record.identity == "team-b/prod"
