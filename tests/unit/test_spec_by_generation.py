"""The daemons' spec cache: parsed once per generation, and an invalid spec is ``None``."""

from typing import Any

from kuberank.crd.rerankmodel import InvalidSpecError, RerankModelSpec, parse_spec
from kuberank.operator.handlers.common import SpecByGeneration


def _model(generation: int, replicas: Any) -> dict[str, Any]:
    return {"metadata": {"name": "bge", "generation": generation},
            "spec": {"source": {"pvc": {"claimName": "weights", "path": "bge.gguf"}},
                     "replicas": replicas}}


def _counting(calls: list[Any]) -> SpecByGeneration[RerankModelSpec]:
    """The cache over ``parse_spec``, noting each parse in ``calls``."""
    def counted(spec: Any) -> RerankModelSpec:
        calls.append(spec)
        return parse_spec(spec)

    return SpecByGeneration(counted, InvalidSpecError)


def test_the_spec_is_parsed_again_only_when_its_generation_changed() -> None:
    calls: list[Any] = []
    parsed = _counting(calls)
    first = parsed.of(_model(1, 2))
    assert first is not None and first.replicas == 2
    assert parsed.of(_model(1, 2)) is first and len(calls) == 1
    scaled = parsed.of(_model(2, 3))
    assert scaled is not None and scaled.replicas == 3 and len(calls) == 2


def test_an_invalid_spec_is_none_until_an_edit_makes_it_valid() -> None:
    calls: list[Any] = []
    parsed = _counting(calls)
    assert parsed.of(_model(1, "many")) is None
    assert parsed.of(_model(1, "many")) is None and len(calls) == 1  # not parsed every look
    fixed = parsed.of(_model(2, 1))
    assert fixed is not None and fixed.replicas == 1

