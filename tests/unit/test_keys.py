import pytest
from kuberank.crd.keys import digest_secret, generate_key, parse_key, verify_secret

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
