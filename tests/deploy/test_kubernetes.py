"""deploy/k8s validated: core kinds against Kubernetes' own schemas, KEDA's and prometheus-operator's against
their CRDs' (strictly: a misspelt key fails, as `kubectl apply --validate=strict` would refuse it)."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator
from jsonschema import Draft202012Validator

from tests.deploy.podman import REPO

#: the Kubernetes release the manifests are checked against (its schemas ship in kubernetes-validate)
KUBERNETES_VERSION = "1.31.0"
#: apiVersion -> the module of models generated from that project's CRDs (cloudcoil.models.*)
CRD_MODELS = {"keda.sh/v1alpha1": keda, "monitoring.coreos.com/v1": prometheus_operator}
MANIFESTS = sorted((REPO / "deploy" / "k8s").glob("*.yaml"))
RESOURCES = [(path.name, doc) for path in MANIFESTS if path.name != "kustomization.yaml"
             for doc in yaml.safe_load_all(path.read_text()) if doc]


def _strict(schema):
    """No property an object's schema does not name (kubernetes-validate's --strict, for CRD schemas)."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            _strict(value)
    elif isinstance(schema, list):
        for value in schema:
            _strict(value)
    return schema


def crd_errors(resource: dict) -> list[str]:
    model = getattr(CRD_MODELS[resource["apiVersion"]], resource["kind"])
    schema = _strict(model.model_json_schema(by_alias=True, mode="validation"))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in Draft202012Validator(schema).iter_errors(resource)]


def validate(resource: dict) -> list[str]:
    """Errors of one resource; a kind without a schema fails (SchemaNotFoundError) rather than passing."""
    if resource["apiVersion"] in CRD_MODELS:
        return crd_errors(resource)
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


@pytest.mark.parametrize("name,resource", RESOURCES,
                         ids=[f"{name}:{doc['kind']}/{doc['metadata']['name']}" for name, doc in RESOURCES])
def test_every_manifest_is_valid(name, resource):
    assert validate(resource) == []


@pytest.mark.parametrize("kind", ["Deployment", "ScaledObject", "PrometheusRule"])
def test_given_a_misspelt_key_when_validated_then_it_is_refused(kind):
    resource = copy.deepcopy(next(doc for _, doc in RESOURCES if doc["kind"] == kind))
    resource["spec"]["replicaz"] = 1
    assert any("replicaz" in error for error in validate(resource))
