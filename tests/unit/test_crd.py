from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kuberank.crd import ApiKeySpec, RerankModelSpec
from kuberank.crd.generate import apikey_crd, main, rendered, rerankmodel_crd
from kuberank.crd.rerankmodel import Engine, InvalidSpecError, parse_spec
from kuberank.operator.builders.meta import GATEWAY_LABELS
from kuberank.runtime.settings import RuntimeSettings
from pydantic import ValidationError
from pydantic.fields import FieldInfo

pytestmark = pytest.mark.unit

CRDS = Path(__file__).resolve().parents[2] / "crds"
SHA = "a" * 64


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, value in node.get("properties", {}).items():
            out.extend(_walk(value, f"{path}.{key}"))
        if isinstance(node.get("items"), dict):
            out.extend(_walk(node["items"], f"{path}[]"))
    return out


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_committed_crd_yaml_matches_the_models() -> None:
    for name, text in rendered().items():
        assert (CRDS / name).read_text() == text, f"crds/{name} is stale: run kuberank-crds"


def test_check_mode_fails_on_stale_files(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path), "--check"]) == 1
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "apikeys.kuberank.io.yaml").write_text("edited: true\n")
    assert main(["--out", str(tmp_path), "--check"]) == 1


def test_every_output_directory_gets_the_same_files(tmp_path: Path) -> None:
    first, second = tmp_path / "crds", tmp_path / "chart-crds"
    assert main(["--out", str(first), "--out", str(second)]) == 0
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir()) == sorted(rendered())
    assert all((first / n).read_text() == (second / n).read_text() for n in names)


def test_schemas_are_structural_with_descriptions_everywhere() -> None:
    for crd in (rerankmodel_crd(), apikey_crd()):
        for path, node in _walk(_schema(crd)):
            assert "$ref" not in node and "title" not in node, path
            if path.startswith((".spec.", ".status.")) and not path.endswith("[]"):
                assert node.get("description"), f"{path} lacks a description"
                assert "type" in node or node.get("x-kubernetes-int-or-string"), path
            assert not ("properties" in node and "additionalProperties" in node), path


def test_rerankmodel_crd_declares_defaults_enums_bounds_and_cel() -> None:
    nodes = dict(_walk(_schema(rerankmodel_crd())))
    assert nodes[".spec.resources.gpus"]["default"] == 1
    assert nodes[".spec.resources.gpuResourceName"]["default"] == "nvidia.com/gpu"
    assert nodes[".spec.resources"]["default"] == {}
    assert nodes[".spec.limits.overflow"]["enum"] == ["truncate", "reject"]
    assert nodes[".spec.replicas"]["minimum"] == 0
    rules = [v["rule"] for v in nodes[".spec.source"]["x-kubernetes-validations"]]
    assert any("filter(x, x).size() == 1" in r for r in rules)
    root = _schema(rerankmodel_crd())["x-kubernetes-validations"]
    assert any("oldSelf.spec.servedName" in v["rule"] and "self.metadata.name" in v["rule"]
               for v in root)


def test_rerankmodel_crd_has_scale_status_columns_and_short_name() -> None:
    crd = rerankmodel_crd()
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    assert version["subresources"]["scale"]["labelSelectorPath"] == ".status.selector"
    assert "status" in version["subresources"]
    assert crd["spec"]["names"]["shortNames"] == ["rrm"]
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names[:3] == ["Served", "Ready", "Desired"] and names[-1] == "Age"
    default = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert default == ["Served", "Ready", "Desired", "Status", "Reason", "Age"]


def test_both_crds_carry_the_part_of_label_of_everything_else_kuberank_makes() -> None:
    part_of = GATEWAY_LABELS["app.kubernetes.io/part-of"]
    for crd in (rerankmodel_crd(), apikey_crd()):
        assert crd["metadata"]["labels"] == {"app.kubernetes.io/part-of": part_of}


def test_apikey_crd_has_short_name_and_wildcard_rule() -> None:
    crd = apikey_crd()
    assert crd["spec"]["names"]["shortNames"] == ["ak"]
    spec = _schema(crd)["properties"]["spec"]
    assert spec["properties"]["expiresAt"]["format"] == "date-time"
    assert "'*' in self.models" in spec["x-kubernetes-validations"][0]["rule"]


def test_generated_yaml_is_loadable() -> None:
    for text in rendered().values():
        doc = yaml.safe_load(text)
        assert doc["kind"] == "CustomResourceDefinition"


def test_spec_parses_camel_case_and_fills_defaults() -> None:
    spec = RerankModelSpec.model_validate(
        {"source": {"huggingFace": {"repo": "org/m-GGUF", "file": "*Q8_0.gguf"}}}
    )
    assert spec.source.kind == "huggingFace"
    assert spec.source.hugging_face is not None
    assert spec.source.hugging_face.revision == "main"
    assert spec.resources.gpus == 1 and spec.replicas == 1
    assert spec.served_name_for("bge") == "bge"


@pytest.mark.parametrize(
    "source",
    [
        {},
        {"url": {"url": "https://x/m.gguf", "sha256": SHA}, "pvc": {"claimName": "c", "path": "m"}},
        {"url": {"sha256": SHA}},
        {"url": {"url": "https://x/m.gguf", "urlSecretRef": {"name": "s"}, "sha256": SHA}},
    ],
)
def test_spec_rejects_anything_but_exactly_one_source(source: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        RerankModelSpec.model_validate({"source": source})


def test_a_url_may_come_from_a_secret_whose_key_defaults_to_url() -> None:
    spec = RerankModelSpec.model_validate(
        {"source": {"url": {"urlSecretRef": {"name": "store"}, "sha256": SHA}}})
    assert spec.source.url is not None and spec.source.url.url is None
    assert spec.source.url.url_secret_ref is not None
    assert spec.source.url.url_secret_ref.key == "url"
    nodes = dict(_walk(_schema(rerankmodel_crd())))
    rules = [v["rule"] for v in nodes[".spec.source.url"]["x-kubernetes-validations"]]
    assert rules == ["has(self.url) != has(self.urlSecretRef)"]


def test_spec_rejects_bad_quantities_and_bounds() -> None:
    src = {"pvc": {"claimName": "c", "path": "m.gguf"}}
    with pytest.raises(ValidationError, match="quantity"):
        RerankModelSpec.model_validate({"source": src, "resources": {"memory": "lots"}})
    # Quantities, but no pod could start its runtime with them.
    for memory in ("0", "1e3", "64Mi", "0.1Gi"):
        with pytest.raises(ValidationError, match="at least 128Mi"):
            RerankModelSpec.model_validate({"source": src, "resources": {"memory": memory}})
    for cpu in ("0", "0m"):
        with pytest.raises(ValidationError, match="no CPU at all"):
            RerankModelSpec.model_validate({"source": src, "resources": {"cpu": cpu}})
    fine = RerankModelSpec.model_validate(
        {"source": src, "resources": {"memory": "128Mi", "cpu": "100m"}})
    assert fine.resources.memory == "128Mi" and fine.resources.cpu == "100m"
    with pytest.raises(ValidationError):
        RerankModelSpec.model_validate({"source": src, "resources": {"gpus": -1}})
    with pytest.raises(ValidationError):  # llama.cpp packs at most 256 sequences
        RerankModelSpec.model_validate({"source": src, "engine": {"maxBatchPairs": 257}})
    with pytest.raises(ValidationError):  # the runtime's own bound
        RerankModelSpec.model_validate({"source": src, "engine": {"contexts": 17}})
    spec = RerankModelSpec.model_validate({"source": src, "resources": {"cpu": 4}})
    assert spec.resources.cpu == "4"


# spec.engine fields and the runtime settings they become.
ENGINE_TO_RUNTIME = {"context_size": "ctx_size", "batch_size": "batch_size", "threads": "threads",
                     "max_batch_pairs": "max_batch_pairs", "contexts": "contexts",
                     "gpu_layers": "gpu_layers"}


def _bounds(field: FieldInfo) -> tuple[float, float]:
    low, high = float("-inf"), float("inf")
    for rule in field.metadata:
        low = max(low, getattr(rule, "ge", None) or low)
        high = min(high, getattr(rule, "le", None) or high)
    return low, high


@pytest.mark.parametrize("field", sorted(ENGINE_TO_RUNTIME))
def test_the_crd_admits_no_engine_value_the_runtime_refuses(field: str) -> None:
    """A value the API server admits but the runtime refuses is a model that crash-loops."""
    crd_low, crd_high = _bounds(Engine.model_fields[field])
    run_low, run_high = _bounds(RuntimeSettings.model_fields[ENGINE_TO_RUNTIME[field]])
    assert crd_low >= run_low and crd_high <= run_high


def test_apikey_spec_defaults_to_every_model() -> None:
    spec = ApiKeySpec.model_validate({})
    assert spec.models == ["*"] and spec.allows_model("anything")
    narrow = ApiKeySpec.model_validate({"models": ["a"], "expiresAt": "2030-01-01T00:00:00Z"})
    assert not narrow.allows_model("b") and narrow.expires_at is not None


def test_an_expiry_without_a_zone_is_utc_for_operator_and_gateway_alike() -> None:
    spec = ApiKeySpec.model_validate({"expiresAt": "2030-01-01T00:00:00"})
    assert spec.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert not spec.expired(datetime(2029, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert spec.expired(datetime(2030, 1, 1, tzinfo=UTC))  # from that instant on
    assert not ApiKeySpec().expired(datetime(9999, 1, 1, tzinfo=UTC))


def test_apikey_models_are_distinct_names() -> None:
    schema = ApiKeySpec.model_json_schema()
    assert schema["properties"]["models"]["items"]["minLength"] == 1
    assert "x-kubernetes-list-type" not in schema["properties"]["models"]  # atomic: one owner
    assert any("exists_one" in r["rule"] for r in schema["x-kubernetes-validations"])
    with pytest.raises(ValidationError):
        ApiKeySpec.model_validate({"models": []})
    # What the API server took before it refused these is read as it means.
    assert ApiKeySpec.model_validate({"models": ["a", "", "b", "a"]}).models == ["a", "b"]


def test_the_operator_names_each_refused_field_in_the_users_words() -> None:
    """What a Degraded InvalidSpec condition says: the field's path as written in the object,
    the validator's own sentence, none of pydantic's "Value error, " preamble."""
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec({"source": {"url": {"sha256": SHA}}, "replicas": -1})
    assert str(caught.value) == (
        "spec.source.url: url needs exactly one of url, urlSecretRef; "
        "spec.replicas: Input should be greater than or equal to 0")


@pytest.mark.parametrize("engine", [
    {"env": [{"name": "KUBERANK_PORT", "value": "9999"}]},
    {"env": [{"name": "kuberank_model", "value": "/nope.gguf"}]},
    {"extraArgs": ["--served-name", "other"]},
    {"extraArgs": ["--host=127.0.0.1"]},
    {"extraArgs": ["--po", "9999"]},
], ids=["port-env", "model-env-any-case", "served-name-flag", "host-flag", "abbreviated-flag"])
def test_the_settings_the_operator_builds_on_cannot_be_overridden(engine: dict[str, Any]) -> None:
    """The user's env and arguments come last and won: a pod listening where its probes and
    Service do not look, another file, another served name; the model showed Ready."""
    with pytest.raises(InvalidSpecError, match=r"^spec.engine: .*the operator sets the model"):
        parse_spec({"source": {"url": {"url": "https://x/m.gguf", "sha256": SHA}},
                    "engine": engine})


def test_other_runtime_settings_may_still_be_passed() -> None:
    spec = parse_spec({"source": {"url": {"url": "https://x/m.gguf", "sha256": SHA}}, "engine": {
        "env": [{"name": "KUBERANK_MAX_WAIT_SECONDS", "value": "5"}, {"name": "HF_HOME"}],
        "extraArgs": ["--max-queued-pairs", "100", "--schedule=fifo", "-v"]}})
    assert spec.engine.extra_args == ["--max-queued-pairs", "100", "--schedule=fifo", "-v"]
