"""Shared pieces of the custom resource models: the camelCase base class and conditions.

The pydantic models in this package are the single source of truth for the CRDs: `generate.py`
turns their JSON schema into the structural OpenAPI schema the API server enforces, and the
operator and gateway parse API objects with the same classes.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from kuberank.protocol.flags import error_message
from kubernetes.utils import parse_quantity
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic.alias_generators import to_camel

GROUP = "kuberank.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
# Every object the operator makes carries this label; the gateway selects its runtimes'
# EndpointSlices by it (the EndpointSlice controller copies a Service's labels to its slices).
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "kuberank"

# What a client may send as `model`: a served name, an alias, or a name in an ApiKey's models.
SERVED_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"


def validation_problems(err: ValidationError, prefix: str = "") -> str:
    """One line naming each refused field (``spec.limits.maxDocuments: ...``)."""
    problems = []
    for error in err.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = error_message(error)
        problems.append(f"{prefix}{where}: {message}" if where else message)
    return "; ".join(problems) or str(err)


# Kubernetes quantities arrive as YAML ints ("cpu: 4") or strings ("500m", "16Gi"). The CRD
# schema can only say "int or string"; the pattern is checked here so the operator can name the
# field in a Degraded condition instead of failing to apply a Deployment.
def timestamp(when: datetime) -> str:
    """A time as our objects store it (RFC 3339, UTC, whole seconds)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: Any) -> datetime | None:
    """A time read from an object (``timestamp``'s form or any ISO 8601 with a zone); None when
    absent or unreadable, so a malformed field written by hand is ignored, not fatal."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


_QUANTITY_RE = re.compile(
    r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$"
)


def _quantity(value: object) -> object:
    text = str(value) if isinstance(value, int | float) else value
    if isinstance(text, str) and not _QUANTITY_RE.match(text):
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 4, 500m, 16Gi)")
    return text


def quantity_value(text: str) -> Decimal:
    """What a quantity string amounts to (``"128Mi"`` is 134217728), by the client's parser."""
    value: Decimal = parse_quantity(text)  # type: ignore[no-untyped-call]
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_quantity),
    WithJsonSchema(
        # The pattern applies to strings only: `kubectl apply` refuses "4GB" at once (as
        # controller-gen writes resource.Quantity), not the operator minutes later.
        {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}],
         "pattern": _QUANTITY_RE.pattern}
    ),
]

# Free-form Kubernetes structures (tolerations, affinity) validated by the API server's own
# types when they land in the pod spec; the CRD keeps them verbatim.
PreservedObject = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "description": "A core/v1 structure, kept verbatim.",
        }
    ),
]


class CrdModel(BaseModel):
    """Base for every spec/status model: camelCase on the wire, snake_case in Python.

    Unknown fields are ignored rather than rejected so that an older gateway keeps reading
    objects written against a newer CRD.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=False
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset optionals omitted."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(CrdModel):
    """One observation about the object, keyed by type (Kubernetes condition conventions)."""

    type: str = Field(description="Condition type, e.g. Ready.", max_length=64)
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        description="One-word CamelCase reason for the last transition.", max_length=128
    )
    message: str = Field(default="", description="What happened and what to do about it.")
    last_transition_time: datetime | None = Field(
        default=None, description="When status last changed (not when it was last checked)."
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation the condition was computed for.", ge=0
    )


def name_list(value: Any) -> Any:
    """A list of names (namespaces) as a setting's environment variable or flag gives it:
    ``team-a,team-b``, a JSON list (as the chart writes it), or a list whose items may hold
    commas; anything else is left for the field's own type check."""
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else [text]
    if isinstance(value, list):
        return [part.strip() for item in value for part in str(item).split(",") if part.strip()]
    return value
