"""RerankModel: one reranker model served by a Deployment of kuberank-runtime pods."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from kuberank.crd.common import (
    SERVED_NAME,
    Condition,
    CrdModel,
    PreservedObject,
    Quantity,
    quantity_value,
    validation_problems,
)
from pydantic import (
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

KIND = "RerankModel"
PLURAL = "rerankmodels"
SINGULAR = "rerankmodel"
SHORT_NAMES = ["rrm"]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# The model's name becomes the Service `rrm-<name>` (a DNS label: 63 characters, no dots) and a
# label value (63): names the API server takes but no child could carry are refused up front.
MAX_NAME_LENGTH = 59
MIN_MEMORY_BYTES = 128 * 2**20  # the runtime alone takes ~110 MiB (a tiny model, measured)
NAME_RULES = [{
    "rule": f"self.metadata.name.size() <= {MAX_NAME_LENGTH} && "
            f"self.metadata.name.matches('{DNS_LABEL}')",
    "message": f"a RerankModel's name must be at most {MAX_NAME_LENGTH} characters of a-z, 0-9 "
               "and '-' (its Service is rrm-<name>, a DNS label)",
}, {
    # The name clients send may not change under them; writing out the default (the object's
    # name) is no change. At the root, where metadata.name is visible.
    "rule": "(has(self.spec.servedName) ? self.spec.servedName : self.metadata.name)"
            " == (has(oldSelf.spec.servedName) ? oldSelf.spec.servedName"
            " : oldSelf.metadata.name)",
    "message": "servedName is immutable (it may only be written out as the model's own name, "
               "its default)",
    "fieldPath": ".spec.servedName",
}]


class SecretKeyRef(CrdModel):
    """A key in a Secret of the RerankModel's namespace."""

    name: str = Field(description="Secret name.", min_length=1, max_length=253)
    key: str = Field(default="token", description="Key inside the Secret.", min_length=1)


class HuggingFaceSource(CrdModel):
    """A file (or glob of files, for split GGUFs) from a Hugging Face model repository."""

    repo: str = Field(
        description="Repository id, e.g. BAAI/bge-reranker-v2-m3-GGUF.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$",
        max_length=200,
    )
    file: str = Field(
        description="File name or glob (e.g. *Q8_0*.gguf) inside the repository.",
        min_length=1,
        max_length=500,
    )
    revision: str = Field(
        default="main", description="Branch, tag or commit to fetch.", min_length=1
    )
    token_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding a Hugging Face token for gated repos."
    )


class UrlSecretKeyRef(SecretKeyRef):
    """A key in a Secret of the RerankModel's namespace holding a URL."""

    key: str = Field(default="url", description="Key inside the Secret.", min_length=1)


class UrlSource(CrdModel):
    """A single file over HTTP(S), verified against its SHA-256: the URL in the spec, or in a
    Secret when it carries credentials or a presigned signature (whoever may read the model may
    read its spec)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "has(self.url) != has(self.urlSecretRef)",
                 "message": "set exactly one of url, urlSecretRef"}
            ]
        }
    )

    url: str | None = Field(
        default=None, description="http(s) URL of the GGUF file.", pattern=r"^https?://.+"
    )
    url_secret_ref: UrlSecretKeyRef | None = Field(
        default=None, description="Secret key (default key: url) holding the http(s) URL, "
        "for one with credentials or a presigned signature; it reaches the fetcher as an "
        "environment variable, never the pod's arguments or the model's status."
    )
    sha256: str = Field(
        description="Expected SHA-256 (hex) of the file; a mismatch fails the pod.",
        pattern=r"^[0-9a-f]{64}$",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> UrlSource:
        if (self.url is None) == (self.url_secret_ref is None):
            raise ValueError("url needs exactly one of url, urlSecretRef")
        return self


class PvcSource(CrdModel):
    """A file already on a PersistentVolumeClaim in the same namespace."""

    claim_name: str = Field(description="PersistentVolumeClaim name.", pattern=DNS_LABEL)
    path: str = Field(
        description="Path of the GGUF file inside the volume.",
        pattern=r"^[^/].*$",
        min_length=1,
    )


class ModelCache(CrdModel):
    """A volume that keeps fetched files for every pod that mounts it."""

    claim_name: str = Field(
        description="PersistentVolumeClaim in the model's namespace (ReadWriteMany when replicas "
        "run on several nodes). Files are kept per source (URL by sha256, Hugging Face by repo "
        "and revision) and fetched once under a lock: other replicas, later pods and other "
        "models with the same source fetch nothing again.",
        pattern=DNS_LABEL,
    )


SOURCE_RULE = "[has(self.huggingFace), has(self.url), has(self.pvc)].filter(x, x).size() == 1"


class ModelSource(CrdModel):
    """Where the model file comes from: exactly one of huggingFace, url, pvc."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": SOURCE_RULE, "message": "set exactly one of huggingFace, url, pvc"}
            ]
        }
    )

    hugging_face: HuggingFaceSource | None = Field(default=None, description="Hugging Face Hub.")
    url: UrlSource | None = Field(default=None, description="Plain HTTP(S) download.")
    pvc: PvcSource | None = Field(default=None, description="Existing volume.")

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        chosen = [s for s in (self.hugging_face, self.url, self.pvc) if s is not None]
        if len(chosen) != 1:
            raise ValueError("source needs exactly one of huggingFace, url, pvc")
        return self

    @property
    def kind(self) -> Literal["huggingFace", "url", "pvc"]:
        if self.hugging_face is not None:
            return "huggingFace"
        return "url" if self.url is not None else "pvc"


class Resources(CrdModel):
    """Compute for each replica; gpus become container limits under gpuResourceName."""

    gpus: int = Field(default=1, ge=0, le=16, description="GPUs per replica; 0 runs on CPU.")
    gpu_resource_name: str = Field(
        default="nvidia.com/gpu",
        description="Extended resource name of the GPU (e.g. amd.com/gpu).",
        pattern=r"^[a-z0-9.-]+/[a-z0-9.-]+$",
    )
    cpu: Quantity | None = Field(
        default=None, description="CPU request and limit: an integer or a quantity string "
        "(\"1.5\" or 1500m; a bare 1.5 is refused, as in every CRD's int-or-string field).")
    memory: Quantity | None = Field(default=None, description="Memory request and limit "
                                    "(at least 128Mi: the runtime alone takes ~110 MiB).")

    @field_validator("cpu")
    @classmethod
    def _some_cpu(cls, value: str | None) -> str | None:
        if value is not None and quantity_value(value) <= 0:
            raise ValueError(f"{value!r} is no CPU at all; leave it out to set none")
        return value

    @field_validator("memory")
    @classmethod
    def _enough_memory(cls, value: str | None) -> str | None:
        """A pod given "0" or "1e3" (bytes) was scheduled and could never start its runtime."""
        if value is not None and quantity_value(value) < MIN_MEMORY_BYTES:
            raise ValueError(f"{value!r} is less than the runtime alone takes (~110 MiB); give "
                             "at least 128Mi, and the model file's size more")
        return value


class Scheduling(CrdModel):
    """Pod scheduling fields, passed to the runtime pods unchanged."""

    node_selector: dict[str, str] | None = Field(default=None, description="Node labels.")
    tolerations: list[PreservedObject] | None = Field(
        default=None, description="Pod tolerations (core/v1 Toleration). GPU models also "
        "tolerate the NoSchedule taint named like resources.gpuResourceName unless one here "
        "names that key."
    )
    affinity: PreservedObject | None = Field(
        default=None, description="Pod affinity (core/v1 Affinity)."
    )
    priority_class_name: str | None = Field(default=None, description="PriorityClass name.")
    runtime_class_name: str | None = Field(
        default=None, description="RuntimeClass name (e.g. nvidia)."
    )


class EnvVar(CrdModel):
    """An extra environment variable for the runtime container."""

    name: str = Field(description="Variable name.", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    value: str = Field(default="", description="Variable value.")


# The runtime settings the operator sets and builds on (the pod's container port, probes and
# Service, the gateway's routing, the file the init container fetches): flag and variable.
OPERATOR_SETTINGS = {"--model": "KUBERANK_MODEL", "--served-name": "KUBERANK_SERVED_NAME",
                     "--host": "KUBERANK_HOST", "--port": "KUBERANK_PORT"}


def _names_operator_flag(arg: str) -> bool:
    """Whether ``arg`` sets one of OPERATOR_SETTINGS' flags, abbreviated too (as argparse
    takes a unique prefix: ``--po``)."""
    name = arg.split("=", 1)[0]
    return len(name) > 2 and name.startswith("--") and any(
        flag.startswith(name) for flag in OPERATOR_SETTINGS)


class Engine(CrdModel):
    """llama.cpp settings of the runtime container."""

    context_size: int | None = Field(
        default=None, ge=64, le=131072, description="Context tokens (llama.cpp n_ctx)."
    )
    batch_size: int | None = Field(
        default=None, ge=16, le=131072,
        description="Batch tokens (at least 16, as the runtime takes); must cover the longest pair."
    )
    threads: int | None = Field(default=None, ge=1, le=256, description="CPU threads.")
    max_batch_pairs: int | None = Field(
        default=None, ge=1, le=256, description="Most query+document pairs packed into one "
        "decode (within batchSize tokens); unset: 1 on the CPU, 8 on a GPU (measured best).")
    contexts: int | None = Field(
        default=None, ge=1, le=16, description="llama.cpp contexts decoding side by side over "
        "one copy of the weights (each adds its compute buffers); unset: 4 on a GPU, one per "
        "CPU thread up to 4 on the CPU (measured best), dropping with a warning those the device "
        "cannot hold; a count set here is required (if that many do not fit, the pod fails to "
        "start). threads is shared out between them.")
    gpu_layers: int | None = Field(
        default=None, ge=-1, le=1000, description="Layers offloaded to the GPU (-1: all)."
    )
    flash_attention: bool | None = Field(
        default=None, description="Flash attention on/off; unset keeps the runtime's default."
    )
    image: str | None = Field(
        default=None, description="Runtime image; defaults to the operator's runtime image."
    )
    extra_args: list[str] | None = Field(
        default=None, description="Extra kuberank-runtime arguments, appended last (not "
        "--model, --served-name, --host or --port: the operator's)."
    )
    env: list[EnvVar] | None = Field(default=None, description="Extra environment variables "
                                     "(not KUBERANK_MODEL, _SERVED_NAME, _HOST or _PORT).")

    @model_validator(mode="after")
    def _leaves_the_operators_settings(self) -> Engine:
        """The user's env and arguments come last and would win over the operator's: a port
        the probes and Service do not use, another file, another served name, all Ready."""
        owned = set(OPERATOR_SETTINGS.values())
        taken = [e.name for e in self.env or [] if e.name.upper() in owned]
        taken += [a for a in self.extra_args or [] if _names_operator_flag(a)]
        if taken:
            raise ValueError(
                f"{', '.join(taken)}: the operator sets the model file, served name, address and "
                "port (spec.source and spec.servedName choose the first two), and the pod's "
                "probes, Service and the gateway rely on them")
        return self


class Limits(CrdModel):
    """Request limits: the runtime enforces the sizes, the gateway the time."""

    max_documents: int | None = Field(
        default=None, ge=1, le=10000, description="Most documents per request."
    )
    max_query_tokens: int | None = Field(
        default=None, ge=1, le=131072, description="Most tokens of the query."
    )
    max_document_tokens: int | None = Field(
        default=None, ge=1, le=131072, description="Most tokens of one document."
    )
    overflow: Literal["truncate", "reject"] = Field(
        default="truncate", description="Over-long pairs are truncated or rejected (413); "
        "Cohere's /v2/rerank always truncates documents, as Cohere's API does.",
    )
    timeout_seconds: int | None = Field(
        default=None, ge=1, le=3600,
        description="How long the gateway waits for a replica's answer before 504 (default: "
        "the gateway's upstream timeout, 60 s): longer for big requests on slow models, "
        "shorter where a late answer is worthless.",
    )


class Scoring(CrdModel):
    """How scores are reported by default."""

    normalize: bool = Field(
        default=False, description="Report sigmoid probabilities instead of raw logits."
    )


class ScaleToZero(CrdModel):
    """Free the GPUs of an idle model: the operator scales it to 0 replicas after a quiet
    spell, and the next request through the gateway scales it back up and waits for it."""

    after_idle_seconds: int = Field(
        default=900, ge=10, le=604800,
        description="Scale to 0 replicas after this long without a request through the gateway.",
    )
    wake_replicas: int = Field(
        default=1, ge=1, le=1000, description="Replicas the first request after idling starts."
    )
    wake_timeout_seconds: int = Field(
        default=300, ge=1, le=3600,
        description="How long the gateway holds requests while a woken replica starts; then 503.",
    )


class Autoscaling(CrdModel):
    """Replicas follow the requests in flight that the gateways report, without an HPA or a
    metrics adapter (the gateways measure it; the operator scales)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self.minReplicas <= self.maxReplicas",
                 "message": "minReplicas must not exceed maxReplicas"}
            ]
        }
    )

    min_replicas: int = Field(default=1, ge=1, le=1000, description="Fewest replicas while "
                              "up (scaleToZero, when set, still takes an idle model to 0).")
    max_replicas: int = Field(ge=1, le=1000, description="Most replicas.")
    target_in_flight: float = Field(
        default=4.0, ge=0.1, le=10000,
        description="Requests in flight per replica to aim for, averaged over the last "
        "report period of every gateway.",
    )
    scale_down_delay_seconds: int = Field(
        default=300, ge=0, le=86400,
        description="Scale down only once fewer replicas were enough for this long.",
    )

    @model_validator(mode="after")
    def _bounds_in_order(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must not exceed maxReplicas")
        return self


class GatewayLoad(CrdModel):
    """What one gateway replica measured for this model over its last report period."""

    in_flight: float = Field(ge=0, description="Average requests in flight.")
    time: datetime = Field(description="End of the period.")


_EMPTY: dict[str, Any] = {"default": {}}  # lets the API server fill nested defaults

class RerankModelSpec(CrdModel):
    """Desired state of a served reranker model (servedName, once set, may not change: a rule
    of the whole object, as it needs metadata.name)."""

    served_name: str | None = Field(
        default=None,
        description="Model name clients send; defaults to metadata.name. Immutable.",
        pattern=SERVED_NAME,
        max_length=200,
    )
    aliases: list[Annotated[str, StringConstraints(pattern=SERVED_NAME, max_length=200)]] | None = (
        Field(
            default=None,
            max_length=16,
            json_schema_extra={"x-kubernetes-list-type": "set"},
            description="More names clients may send as `model` (resolved by the gateway, which "
            "forwards the request under servedName). Unlike servedName they may change at any "
            "time, e.g. to keep an old name working or to answer a name clients hard-code.",
        )
    )
    source: ModelSource = Field(description="Where the model file comes from.")
    cache: ModelCache | None = Field(
        default=None,
        description="Keep fetched files on a shared volume (default: each pod fetches into its "
        "own emptyDir). Not used by pvc sources, which are read in place.",
    )
    replicas: int = Field(default=1, ge=0, le=1000, description="Number of runtime pods.")
    scale_to_zero: ScaleToZero | None = Field(
        default=None,
        description="Scale to 0 replicas when idle and back up on the next request (default: "
        "replicas stay as set).",
    )
    autoscaling: Autoscaling | None = Field(
        default=None,
        description="Scale between minReplicas and maxReplicas on the load the gateways see "
        "(default: replicas stay as set; do not combine with an HPA).",
    )
    resources: Resources = Field(
        default_factory=Resources, json_schema_extra=_EMPTY, description="Compute per replica."
    )
    scheduling: Scheduling = Field(
        default_factory=Scheduling, json_schema_extra=_EMPTY, description="Pod scheduling."
    )
    engine: Engine = Field(
        default_factory=Engine, json_schema_extra=_EMPTY, description="llama.cpp settings."
    )
    limits: Limits = Field(
        default_factory=Limits, json_schema_extra=_EMPTY, description="Request limits."
    )
    scoring: Scoring = Field(
        default_factory=Scoring, json_schema_extra=_EMPTY, description="Score reporting."
    )
    allow_same_namespace: bool = Field(
        default=False,
        description="Also let any pod of this namespace reach the runtime (not only the gateway).",
    )

    def served_name_for(self, name: str) -> str:
        return self.served_name or name


class RerankModelStatus(CrdModel):
    """Observed state, written by the operator."""

    observed_generation: int | None = Field(
        default=None, description="metadata.generation last reconciled.", ge=0
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Available, Progressing, Degraded."
    )
    replicas: int | None = Field(default=None, ge=0, description="Pods of the Deployment.")
    ready_replicas: int | None = Field(default=None, ge=0, description="Ready pods.")
    selector: str | None = Field(default=None, description="Label selector of the pods.")
    endpoint: str | None = Field(default=None, description="In-cluster URL of the Service.")
    served_name: str | None = Field(default=None, description="Effective served name.")
    gateway_load: dict[str, GatewayLoad] | None = Field(
        default=None,
        description="Per gateway replica, the load it last reported for a model with "
        "autoscaling (written by the gateways).",
    )
    last_request_time: datetime | None = Field(
        default=None,
        description="When a gateway last forwarded a request to this model (written by the "
        "gateways for every model, at most once a minute per gateway replica, and every quarter "
        "of scaleToZero.afterIdleSeconds when that is shorter).",
    )


class InvalidSpecError(ValueError):
    """A spec the API server accepted but the operator cannot run; names the fields."""


def parse_spec(raw: Any) -> RerankModelSpec:
    """A spec as the API server returns it (camelCase), or InvalidSpecError naming each
    refused field as ``spec.<path>``."""
    try:
        return RerankModelSpec.model_validate(raw or {})
    except ValidationError as err:
        raise InvalidSpecError(validation_problems(err, prefix="spec.")) from err


def child_name(model: str) -> str:
    """The name shared by a model's Deployment, Service, NetworkPolicy and PDB (the gateway
    finds its EndpointSlices by the Service's)."""
    return f"rrm-{model}"


# The runtime container's port, and its Service's, by name.
RUNTIME_PORT_NAME = "http"


def served_name(obj: Mapping[str, Any]) -> str:
    """The name clients send for a RerankModel object as the API server returns it:
    spec.servedName, else its own name (``RerankModelSpec.served_name_for`` on parsed specs)."""
    spec = obj.get("spec") or {}
    return str(spec.get("servedName") or (obj.get("metadata") or {}).get("name") or "")


def aliases_of(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """spec.aliases of a RerankModel object as the API server returns it, sorted, without
    duplicates or anything that is not a name."""
    raw = (obj.get("spec") or {}).get("aliases")
    names = raw if isinstance(raw, list) else []
    return tuple(sorted({n for n in names if isinstance(n, str) and n}))


def claim_order(metadata: Mapping[str, Any]) -> tuple[str, str]:
    """Which of several RerankModels of one namespace with the same served name serves it: the
    oldest (creationTimestamp, RFC 3339 so it sorts as text), then the first by name. The gateway
    routes by it and the operator flags the others, so a newly created model can never take a
    served name, and its traffic, from one that already has it."""
    created = metadata.get("creationTimestamp")
    return (created if isinstance(created, str) and created else "~", str(metadata.get("name")))


@dataclass(frozen=True)
class NameClaim:
    """The names one RerankModel claims in its namespace (``name_holders`` decides which it
    gets)."""

    name: str  # the object's name
    served_name: str
    aliases: tuple[str, ...] = ()
    order: tuple[str, str] = ("~", "")  # claim_order

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> NameClaim:
        meta = obj.get("metadata") or {}
        return cls(str(meta.get("name") or ""), served_name(obj), aliases_of(obj),
                   claim_order(meta))


def name_holders(claims: Iterable[NameClaim]) -> dict[str, NameClaim]:
    """Every name clients may send in one namespace, and the model it reaches: of the models
    claiming one served name the first by ``claim_order`` holds it, a served name beats any
    alias, and of the holders declaring one alias the first by object name gets it. The one
    rule the gateway routes by and the operator reports (``ServedNameTaken``,
    ``AliasShadowed``). Pure."""
    holders: dict[str, NameClaim] = {}
    for claim in sorted(claims, key=lambda c: c.order):
        holders.setdefault(claim.served_name, claim)
    for holder in sorted(holders.values(), key=lambda c: c.name):
        for alias in holder.aliases:
            holders.setdefault(alias, holder)
    return holders
