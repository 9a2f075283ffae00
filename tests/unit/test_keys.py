import dataclasses
from datetime import UTC, datetime

import pytest
from kuberank.crd.apikey import ApiKeySpec
from kuberank.crd.keys import digest_secret, generate_key, parse_key, verify_secret
from kuberank.operator.reconcilers.apikey import (
    Minted,
    SecretRefusedError,
    desired_status,
    key_events,
)

pytestmark = pytest.mark.unit


def test_generated_key_parses_into_id_and_secret() -> None:
    key = generate_key()
    parsed = parse_key(key)
    assert parsed is not None
    assert key == f"kr_{parsed.key_id}_{parsed.secret}"


def test_parse_key_rejects_foreign_shapes() -> None:
    foreign = [
        "",
        "kr_",
        "sk-123",
        "kr_zzzzzzzzzzzzzzzz_" + "0" * 32,
        "kr_" + "0" * 16 + "_" + "0" * 31,
    ]
    for bad in foreign:
        assert parse_key(bad) is None


def test_digest_verifies_only_its_secret() -> None:
    published = digest_secret("a" * 32)
    assert verify_secret("a" * 32, published)
    assert not verify_secret("b" * 32, published)
    assert not verify_secret("a" * 32, "sha256$nothex$00")


def test_same_secret_gets_different_salts() -> None:
    assert digest_secret("a" * 32) != digest_secret("a" * 32)


def test_a_key_nobody_asked_to_change_is_a_warning_naming_what_clients_lost() -> None:
    plain = Minted("a" * 16, "d", None, rotated=False)
    assert key_events(plain, "k-key") == []
    rotated = key_events(dataclasses.replace(plain, rotated=True), "k-key")
    assert rotated == [("Normal", "Rotated", f"New key id {'a' * 16}.")]
    lost = key_events(dataclasses.replace(plain, lost="b" * 16), "k-key")
    assert [(kind, reason) for kind, reason, _ in lost] == [("Warning", "KeyReplaced")]
    assert f"key id {'b' * 16} is gone" in lost[0][2] and "Secret k-key" in lost[0][2]
    copied = key_events(dataclasses.replace(plain, lost="b" * 16, copied_from="ns/other",
                                            shared_with="ns/third"), "k-key")
    assert [reason for _, reason, _ in copied] == ["KeyReplaced", "KeyShared"]
    assert "ApiKey ns/other" in copied[0][2] and "ApiKey ns/third" in copied[1][2]
    same_id = key_events(dataclasses.replace(plain, overwritten="a" * 16), "k-key")
    assert "the key it had under that id is gone" in same_id[0][2]
    assert all(kind == "Warning" for kind, _, _ in copied + same_id)


def test_a_refused_key_secret_unpublishes_the_key_it_was_to_replace() -> None:
    """The rotation asked for could not be stored: the key before it is no longer published
    (null clears it in the status' merge patch), and Active says why."""
    body = {"metadata": {"name": "k", "namespace": "ns", "generation": 2},
            "status": {"keyId": "a" * 16, "digest": "sha256$x$y", "rotation": "r1"}}
    refused = SecretRefusedError("k-key", "field is immutable", rotation="r2")
    status = desired_status(body, ApiKeySpec(), None, datetime.now(UTC), refused=refused)
    assert status["keyId"] is None and status["digest"] is None
    assert status["rotation"] == "r1"  # r2 is not done: the next attempt still rotates
    active = next(c for c in status["conditions"] if c["type"] == "Active")
    assert (active["status"], active["reason"]) == ("False", "ChildRefused")
    assert "kuberank.io/rotate=r2" in active["message"]
    assert "field is immutable" in active["message"]
    assert f"key id {'a' * 16} is no longer accepted" in active["message"]
    first = SecretRefusedError("k-key", "denied by policy", rotation=None).message(None)
    assert first.startswith("A new key could not be stored") and "no longer" not in first
