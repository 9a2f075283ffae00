"""Custom resource models (RerankModel, ApiKey), API key helpers and CRD generation."""

from kuberank.crd.apikey import ApiKeySpec, ApiKeyStatus, RateLimit
from kuberank.crd.common import API_VERSION, GROUP, VERSION, Condition
from kuberank.crd.rerankmodel import (
    Engine,
    HuggingFaceSource,
    Limits,
    ModelSource,
    PvcSource,
    RerankModelSpec,
    RerankModelStatus,
    Resources,
    Scheduling,
    Scoring,
    UrlSource,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "ApiKeySpec",
    "ApiKeyStatus",
    "Condition",
    "Engine",
    "HuggingFaceSource",
    "Limits",
    "ModelSource",
    "PvcSource",
    "RateLimit",
    "RerankModelSpec",
    "RerankModelStatus",
    "Resources",
    "Scheduling",
    "Scoring",
    "UrlSource",
]
