"""Routing: served name in the key's namespace → RerankModel → its ready endpoints."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from typing import Any

import pytest
from kuberank.gateway.routing import (
    ModelRoute,
    RoutingTable,
    WakePolicy,
    route_from_rerankmodel,
    slice_from_endpointslice,
    with_model,
)
from kuberank.gateway.watch import ModelSink

pytestmark = pytest.mark.unit


def rerankmodel(name: str, namespace: str = "ns1", served: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"source": {"url": {"url": "https://example.invalid/m.gguf"}}}
    if served:
        spec["servedName"] = served
    return {"kind": "RerankModel", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def endpointslice(
    name: str,
    service: str,
    endpoints: list[dict[str, Any]],
    namespace: str = "ns1",
    ports: list[dict[str, Any]] | None = None,
    address_type: str = "IPv4",
) -> dict[str, Any]:
    return {
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": address_type,
        "ports": ports if ports is not None else [{"name": "http", "port": 8080}],
        "endpoints": endpoints,
    }


def table(*objects: dict[str, Any]) -> RoutingTable:
    routes = RoutingTable()
    for obj in objects:
        if obj["kind"] == "RerankModel":
            route = route_from_rerankmodel(obj)
            assert route is not None
            routes.upsert_model(route)
        else:
            record = slice_from_endpointslice(obj)
            assert record is not None
            routes.upsert_slice(record)
    return routes


def test_served_name_defaults_to_the_object_name() -> None:
    assert route_from_rerankmodel(rerankmodel("bge")) == ModelRoute("ns1", "bge", "bge")
    assert route_from_rerankmodel(rerankmodel("bge", served="BAAI/bge")) == ModelRoute(
        "ns1", "bge", "BAAI/bge"
    )


def test_scale_to_zero_becomes_a_wake_policy_with_defaults_for_missing_fields() -> None:
    plain = route_from_rerankmodel(rerankmodel("bge"))
    assert plain is not None and plain.wake is None and plain.replicas == 1
    obj = rerankmodel("bge")
    obj["spec"].update(replicas=0, scaleToZero={"afterIdleSeconds": 120, "wakeReplicas": "x"})
    route = route_from_rerankmodel(obj)
    assert route is not None and route.replicas == 0
    assert route.wake == WakePolicy(after_idle_seconds=120, wake_replicas=1,
                                    wake_timeout_seconds=300)
    # requests are recorded often enough for the operator's idle clock, at most once a minute
    assert route.wake.record_interval == 30
    assert WakePolicy(after_idle_seconds=3600).record_interval == 60


@pytest.mark.parametrize(("limits", "timeout"), [
    ({"timeoutSeconds": 5}, 5.0), ({"timeoutSeconds": 0}, None), ({"timeoutSeconds": "5"}, None),
    ({"timeoutSeconds": True}, None), ({}, None), ({"maxDocuments": 3}, None),
])
def test_a_models_own_timeout_is_taken_when_usable_else_the_gateways_default_applies(
    limits: dict[str, Any], timeout: float | None,
) -> None:
    obj = rerankmodel("bge")
    obj["spec"]["limits"] = limits
    route = route_from_rerankmodel(obj)
    assert route is not None and route.timeout == timeout


def degraded(reason: str, status: str = "True") -> dict[str, Any]:
    obj = rerankmodel("bge")
    obj["status"] = {"conditions": [
        {"type": "Ready", "status": "False", "reason": reason, "message": "m"},
        {"type": "Degraded", "status": status, "reason": reason, "message": "Pod p keeps crashing"},
    ]}
    return obj


def test_a_degraded_model_is_failing_unless_its_pods_may_still_be_scheduled() -> None:
    failing = route_from_rerankmodel(degraded("CrashLoop"))
    assert failing is not None and failing.failing == "CrashLoop: Pod p keeps crashing"
    for reason in ("InsufficientGPU", "ClaimNotReady", "Unschedulable"):
        pending = route_from_rerankmodel(degraded(reason))
        assert pending is not None and pending.failing is None, reason
        assert pending.waiting == f"{reason}: Pod p keeps crashing"  # what its 503 says
    assert failing.waiting is None
    healthy = route_from_rerankmodel(degraded("AsExpected", status="False"))
    assert healthy is not None and healthy.failing is None
    serving = route_from_rerankmodel(degraded("AliasShadowed"))  # serves, under fewer names
    assert serving is not None and serving.failing is None
    odd = rerankmodel("bge")
    odd["status"] = {"conditions": ["junk", {"type": "Degraded"}]}
    route = route_from_rerankmodel(odd)
    assert route is not None and route.failing is None


def test_models_resolve_only_in_the_keys_namespace() -> None:
    routes = table(rerankmodel("bge", "ns1"), rerankmodel("other", "ns2", served="bge2"))
    assert routes.resolve("ns1", "bge") == ModelRoute("ns1", "bge", "bge")
    assert routes.resolve("ns2", "bge") is None
    assert routes.resolve("ns1", "bge2") is None


def test_duplicate_served_names_resolve_to_the_same_object_every_time() -> None:
    routes = table(rerankmodel("zeta", served="m"), rerankmodel("alpha", served="m"))
    assert routes.resolve("ns1", "m") == ModelRoute("ns1", "alpha", "m")
    assert [r.served_name for r in routes.models_in("ns1")] == ["m"]


def test_the_oldest_model_keeps_a_served_name_a_newer_one_claims_too() -> None:
    older, newer = rerankmodel("zeta", served="m"), rerankmodel("alpha", served="m")
    older["metadata"]["creationTimestamp"] = "2026-11-01T09:00:00Z"
    newer["metadata"]["creationTimestamp"] = "2026-11-26T09:00:00Z"
    routes = table(newer, older)
    assert routes.resolve("ns1", "m") == ModelRoute("ns1", "zeta", "m")


def test_a_model_being_deleted_holds_no_name_and_its_rival_takes_it_at_once() -> None:
    older, newer = rerankmodel("zeta", served="m"), rerankmodel("alpha", served="m")
    older["metadata"]["creationTimestamp"] = "2026-11-01T09:00:00Z"
    newer["metadata"]["creationTimestamp"] = "2026-11-26T09:00:00Z"
    sink = ModelSink(RoutingTable())
    sink.replace([older, newer], None)
    assert (route := sink.routes.resolve("ns1", "m")) is not None and route.name == "zeta"
    older["metadata"]["deletionTimestamp"] = "2026-11-27T09:00:00Z"  # a finalizer holds it
    sink.apply("MODIFIED", older)
    assert (route := sink.routes.resolve("ns1", "m")) is not None and route.name == "alpha"
    assert sink.routes.model("ns1", "zeta") is None
    sink.replace([older, newer], None)  # a relist agrees
    assert [r.name for r in sink.routes.models_in("ns1")] == ["alpha"]
    sink.apply("MODIFIED", newer | {"metadata": newer["metadata"] | {"deletionTimestamp": "x"}})
    assert sink.routes.resolve("ns1", "m") is None  # 404 unknown model, not a doomed replica


def aliased(name: str, *aliases: str, served: str | None = None) -> dict[str, Any]:
    obj = rerankmodel(name, served=served)
    obj["spec"]["aliases"] = list(aliases)
    return obj


def test_aliases_reach_their_model_but_never_shadow_a_served_name() -> None:
    routes = table(
        aliased("bge", "rerank-english-v3.0", "old-bge", "shared"),
        aliased("jina", "shared", "bge"),  # "bge" is another model's served name
    )
    resolved = {n: routes.resolve("ns1", n) for n in ("rerank-english-v3.0", "old-bge", "bge")}
    assert {n: r.name for n, r in resolved.items() if r} == {
        "rerank-english-v3.0": "bge", "old-bge": "bge", "bge": "bge"}
    shared = routes.resolve("ns1", "shared")
    assert shared is not None and shared.name == "bge"  # the alphabetically first object
    assert routes.resolve("ns1", "nothing") is None
    assert routes.resolve("ns2", "old-bge") is None
    assert [(n, r.name) for n, r in routes.names_in("ns1")] == [
        ("bge", "bge"), ("jina", "jina"), ("old-bge", "bge"), ("rerank-english-v3.0", "bge"),
        ("shared", "bge")]


def test_a_request_under_an_alias_is_forwarded_under_the_served_name() -> None:
    body = '{"model":"old-bge","query":"q","documents":["ü",{"text":"b"}],"top_n":1}'.encode()
    forwarded = json.loads(with_model(body, "bge"))
    assert forwarded == {**json.loads(body), "model": "bge"}


def test_a_lone_surrogate_in_a_field_no_dialect_reads_is_forwarded_escaped() -> None:
    """``"user": "\\ud83d"`` parses and is ignored; forwarded under an alias it had no UTF-8
    form and the gateway answered 500 where the served name got a 200."""
    body = b'{"model":"old-bge","query":"\xc3\xbc","documents":["a"],"user":"\\ud83d"}'
    forwarded = with_model(body, "bge")
    assert json.loads(forwarded.decode()) == {**json.loads(body), "model": "bge"}


def test_only_ready_endpoints_of_the_models_service_are_used() -> None:
    routes = table(
        rerankmodel("bge"),
        endpointslice(
            "rrm-bge-a",
            "rrm-bge",
            [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
                {"addresses": ["10.0.0.3"], "conditions": {}},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": True, "terminating": True}},
            ],
        ),
        endpointslice("rrm-bge-b", "rrm-bge", [{"addresses": ["10.0.0.5"]}]),
        endpointslice("rrm-other-a", "rrm-other", [{"addresses": ["10.0.0.9"]}]),
        endpointslice("rrm-bge-x", "rrm-bge", [{"addresses": ["10.0.0.8"]}], namespace="ns2"),
    )
    route = routes.resolve("ns1", "bge")
    assert route is not None
    assert routes.endpoints(route) == ["10.0.0.1:8080", "10.0.0.3:8080", "10.0.0.5:8080"]


def test_port_named_http_is_preferred_and_ipv6_is_bracketed() -> None:
    record = slice_from_endpointslice(
        endpointslice(
            "s",
            "rrm-m",
            [{"addresses": ["fd00::1"]}],
            address_type="IPv6",
            ports=[{"name": "metrics", "port": 9090}, {"name": "http", "port": 8080}],
        )
    )
    assert record is not None and record.endpoints == ("[fd00::1]:8080",)


def test_slice_without_ports_or_with_fqdn_has_no_endpoints() -> None:
    no_ports = slice_from_endpointslice(
        endpointslice("s", "rrm-m", [{"addresses": ["1.2.3.4"]}], ports=[])
    )
    fqdn = slice_from_endpointslice(
        endpointslice("s", "rrm-m", [{"addresses": ["a.example"]}], address_type="FQDN")
    )
    assert no_ports is not None and no_ports.endpoints == ()
    assert fqdn is not None and fqdn.endpoints == ()


def test_slice_without_service_label_is_ignored() -> None:
    obj = endpointslice("s", "rrm-m", [])
    obj["metadata"]["labels"] = {}
    assert slice_from_endpointslice(obj) is None


def test_a_slice_mirrored_from_endpoints_is_ignored_but_the_controllers_is_not() -> None:
    """A mirrored slice's addresses are whatever someone wrote into an Endpoints object (with a
    selector-less Service of the model's name): any pod IP, another tenant's included."""
    obj = endpointslice("s", "rrm-m", [{"addresses": ["10.0.0.9"]}])
    manager = "endpointslice.kubernetes.io/managed-by"
    obj["metadata"]["labels"][manager] = "endpointslicemirroring-controller.k8s.io"
    assert slice_from_endpointslice(obj) is None
    obj["metadata"]["labels"][manager] = "endpointslice-controller.k8s.io"
    record = slice_from_endpointslice(obj)
    assert record is not None and record.endpoints == ("10.0.0.9:8080",)


def test_removals_and_relists_update_the_table() -> None:
    routes = table(
        rerankmodel("bge"), endpointslice("s1", "rrm-bge", [{"addresses": ["10.0.0.1"]}])
    )
    route = routes.resolve("ns1", "bge")
    assert route is not None
    routes.remove_slice("ns1", "s1")
    assert routes.endpoints(route) == []
    routes.replace_models([], namespace="ns1")
    assert routes.resolve("ns1", "bge") is None


def test_every_change_of_the_models_reaches_the_next_request() -> None:
    """Name holders are worked out once per change of the models, not per request: each kind
    of change must be seen by the request after it."""
    routes = table(rerankmodel("bge"))
    assert routes.resolve("ns1", "rr") is None
    routes.upsert_model(ModelRoute("ns1", "bge", "bge", aliases=("rr",)))
    assert (route := routes.resolve("ns1", "rr")) is not None and route.name == "bge"
    routes.upsert_model(ModelRoute("ns1", "bge", "bge2"))
    assert routes.resolve("ns1", "bge") is None and routes.resolve("ns1", "rr") is None
    assert [name for name, _ in routes.names_in("ns1")] == ["bge2"]
    routes.remove_model("ns1", "bge")
    assert routes.resolve("ns1", "bge2") is None
    routes.replace_models([ModelRoute("ns1", "x", "x"), ModelRoute("ns2", "y", "y")])
    assert routes.resolve("ns1", "x") is not None and routes.resolve("ns2", "y") is not None
    routes.replace_models([], namespace="ns2")
    assert routes.resolve("ns2", "y") is None and routes.resolve("ns1", "x") is not None


def test_slices_are_found_by_their_service_through_updates_and_relists() -> None:
    routes = table(
        endpointslice("a", "rrm-bge", [{"addresses": ["10.0.0.1"]}]),
        endpointslice("b", "rrm-bge", [{"addresses": ["10.0.0.2"]}]),
        endpointslice("c", "rrm-other", [{"addresses": ["10.0.0.3"]}]),
        endpointslice("a", "rrm-bge", [{"addresses": ["10.9.0.1"]}], namespace="ns2"),
    )
    assert routes.service_endpoints("ns1", "rrm-bge") == ["10.0.0.1:8080", "10.0.0.2:8080"]
    # A slice re-labelled for another Service leaves the first one's endpoints.
    moved = slice_from_endpointslice(endpointslice("b", "rrm-other", [{"addresses": ["10.0.0.2"]}]))
    assert moved is not None
    routes.upsert_slice(moved)
    assert routes.service_endpoints("ns1", "rrm-bge") == ["10.0.0.1:8080"]
    assert routes.service_endpoints("ns1", "rrm-other") == ["10.0.0.2:8080", "10.0.0.3:8080"]
    # A relist of ns1 replaces ns1's slices only.
    fresh = slice_from_endpointslice(endpointslice("d", "rrm-bge", [{"addresses": ["10.0.0.4"]}]))
    assert fresh is not None
    routes.replace_slices([fresh], namespace="ns1")
    assert routes.service_endpoints("ns1", "rrm-bge") == ["10.0.0.4:8080"]
    assert routes.service_endpoints("ns1", "rrm-other") == []
    assert routes.service_endpoints("ns2", "rrm-bge") == ["10.9.0.1:8080"]
    routes.remove_slice("ns1", "d")
    assert routes.service_endpoints("ns1", "rrm-bge") == []


def test_a_relist_of_one_watch_keeps_the_slices_another_watch_found() -> None:
    """The gateway's own Service is watched apart from the models' (its slices do not carry
    kuberank's label); the models' relist of the same namespace must not drop them."""
    routes = RoutingTable()
    peer = slice_from_endpointslice(endpointslice("gw-a", "gw", [{"addresses": ["10.0.0.7"]}]))
    model = slice_from_endpointslice(endpointslice("m", "rrm-bge", [{"addresses": ["10.0.0.1"]}]))
    assert peer is not None and model is not None
    routes.upsert_slice(replace(peer, pool="peers"))
    routes.upsert_slice(model)
    routes.replace_slices([], namespace=None)  # the models' watch relists, finding none now
    assert routes.service_endpoints("ns1", "gw") == ["10.0.0.7:8080"]
    assert routes.service_endpoints("ns1", "rrm-bge") == []
    routes.replace_slices([], namespace="ns1", pool="peers")
    assert routes.service_endpoints("ns1", "gw") == []


def test_the_operator_flags_exactly_the_aliases_the_gateway_sends_elsewhere() -> None:
    """The operator's ``AliasShadowed`` and the gateway's routing follow one rule
    (``name_holders``) over what each sees: over many seeded namespaces, some models being
    deleted, an alias is flagged exactly when the gateway routes it to another model (models
    that do not hold their served name aside: ``ServedNameTaken``)."""
    from kuberank.operator.status.rerankmodel import name_standing

    names, pool = ["a", "b", "c"], ["a", "b", "x", "y"]
    rng = random.Random(7)
    checked = 0
    for _ in range(3000):
        objs = []
        for name in rng.sample(names, rng.randint(2, 3)):
            obj = rerankmodel(name, served=rng.choice([None, *pool]))
            obj["metadata"]["creationTimestamp"] = f"2026-11-0{rng.randint(1, 3)}T00:00:00Z"
            obj["spec"]["aliases"] = rng.sample(pool, rng.randint(0, 3))
            if rng.random() < 0.2:
                obj["metadata"]["deletionTimestamp"] = "2026-11-04T00:00:00Z"
            objs.append(obj)
        table = RoutingTable()
        table.replace_models([r for r in map(route_from_rerankmodel, objs) if r is not None])
        for obj in objs:
            if obj["metadata"].get("deletionTimestamp"):  # its status is left as it was
                assert table.model("ns1", obj["metadata"]["name"]) is None
                continue
            taken_by, shadowed = name_standing(obj, objs)
            if taken_by is not None:
                continue
            flagged = {s.alias: s.holder for s in shadowed}
            for alias in obj["spec"]["aliases"]:
                route = table.resolve("ns1", alias)
                assert route is not None
                elsewhere = route.name if route.name != obj["metadata"]["name"] else None
                assert flagged.get(alias) == elsewhere, (objs, alias)
                checked += 1
    assert checked > 3000
