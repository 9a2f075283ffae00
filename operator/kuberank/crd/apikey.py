"""ApiKey: a bearer key for the gateway, minted by the operator into a Secret it owns."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from kuberank.crd.common import SERVED_NAME, Condition, CrdModel
from pydantic import ConfigDict, Field, field_validator

KIND = "ApiKey"
PLURAL = "apikeys"
SINGULAR = "apikey"
SHORT_NAMES = ["ak"]

# The name is the value of the key Secret's kuberank.io/apikey label: at most 63 characters.
NAME_RULES = [{
    "rule": "self.metadata.name.size() <= 63",
    "message": "an ApiKey's name must be at most 63 characters (it labels the key's Secret)",
}]
ROTATE_ANNOTATION = "kuberank.io/rotate"
SECRET_FIELD = "api-key"


def secret_name(apikey_name: str) -> str:
    """Name of the Secret that holds the plain key."""
    return f"{apikey_name}-key"


class RateLimit(CrdModel):
    """Per-key budgets the gateway enforces (token buckets per minute, a cap on requests in
    flight)."""

    requests_per_minute: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Requests per minute, as a token "
        "bucket: a full minute's worth may come at once, then they refill evenly."
    )
    tokens_per_minute: int | None = Field(
        default=None, ge=1, le=1_000_000_000, description="Prompt tokens per minute. A "
        "request's tokens are estimated from its text and reserved when it is admitted, then "
        "settled with the runtime's count; one larger than the minute's tokens is admitted on "
        "a full budget and overdraws it, which then delays the key's next requests until repaid "
        "(Retry-After says how long)."
    )
    concurrent_requests: int | None = Field(
        default=None, ge=1, le=100_000,
        description="Requests in flight at once, so one client cannot fill every replica's "
        "queue (each of N gateway replicas admits ceil(limit / N)).",
    )


class ApiKeySpec(CrdModel):
    """Who may call which models, until when."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.models) || !('*' in self.models) || size(self.models) == 1",
                    "message": "models: '*' cannot be combined with other names",
                },
                {
                    # A rule, not x-kubernetes-list-type: set, which would let server-side
                    # apply merge the lists of two managers into a key's access.
                    "rule": "!has(self.models) || "
                            "self.models.all(m, self.models.exists_one(n, n == m))",
                    "message": "models: a name is given twice",
                },
            ]
        }
    )

    description: str = Field(default="", description="What the key is for.", max_length=1000)
    models: list[str] = Field(
        default_factory=lambda: ["*"],
        # The API server refuses a name given twice, an empty one or one no model could be
        # served under ("a b"); objects it took before it did are read as they mean
        # (``_each_name_once``), not refused by the gateway.
        json_schema_extra={"default": ["*"],
                           "items": {"type": "string", "minLength": 1, "maxLength": 253,
                                     "pattern": rf"^(\*|{SERVED_NAME[1:-1]})$"}},
        description="Served names (or aliases) this key may use, or ['*'] for every model in "
        "the namespace (the default when left out).",
        min_length=1,
        max_length=100,
    )
    expires_at: datetime | None = Field(
        default=None, description="RFC 3339 time after which the key is refused."
    )
    disabled: bool = Field(default=False, description="Refuse the key without deleting it.")
    rate_limit: RateLimit | None = Field(default=None, description="Per-key rate limits.")

    @field_validator("models")
    @classmethod
    def _each_name_once(cls, models: list[str]) -> list[str]:
        return list(dict.fromkeys(name for name in models if name))

    @field_validator("expires_at")
    @classmethod
    def _utc_unless_zoned(cls, when: datetime | None) -> datetime | None:
        """A time without a zone is UTC (the API server keeps what was written)."""
        return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when

    def allows_model(self, served_name: str) -> bool:
        return model_allowed(self.models, served_name)

    def expired(self, now: datetime) -> bool:
        return expired_at(self.expires_at, now)


ALL_MODELS = "*"


def expired_at(expires_at: datetime | None, now: datetime) -> bool:
    """A key is refused from ``expiresAt`` on, at the operator and at every gateway alike."""
    return expires_at is not None and now >= expires_at


def model_allowed(models: Collection[str], served_name: str) -> bool:
    """Whether a key whose ``spec.models`` is ``models`` may use ``served_name``."""
    return ALL_MODELS in models or served_name in models


class ApiKeyStatus(CrdModel):
    """Public facts about the minted key; never the key itself."""

    observed_generation: int | None = Field(default=None, ge=0, description="Last reconciled.")
    key_id: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{16}$", description="Public id part of the key."
    )
    digest: str | None = Field(
        default=None, description="Salted SHA-256 of the secret part: sha256$salt$hex."
    )
    secret_name: str | None = Field(default=None, description="Secret holding the key.")
    rotation: str | None = Field(
        default=None, description="Value of the rotate annotation last honoured."
    )
    last_used_time: datetime | None = Field(
        default=None,
        description="When a gateway last accepted this key (written by the gateway, at most "
        "once a minute per replica): keys nobody uses any more show here.",
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Active, Expired, Disabled."
    )


def parse_spec(spec: Any) -> ApiKeySpec:
    """Parse a spec as it comes from the API server (camelCase)."""
    return ApiKeySpec.model_validate(spec)
