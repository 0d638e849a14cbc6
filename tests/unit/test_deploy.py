"""docker-compose.yml, deploy/Dockerfile and deploy/k8s say what the code can actually do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from events.topology import EVENT_QUEUES
from schemas.settings import SECRET_FIELDS, Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
MANIFESTS = {path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
             for path in sorted((REPO / "deploy" / "k8s").glob("*.yaml"))}
DOCKERFILE = (REPO / "deploy" / "Dockerfile").read_text()

ENV_NAME = re.compile(r"^SFSYNC_([A-Z0-9_]+?)(_FILE)?$")


def _cli_commands() -> set[str]:
    from workers.cli import main

    return set(main.commands)


def _setting_exists(name: str) -> bool:
    match = ENV_NAME.match(name)
    assert match, f"{name} is not an SFSYNC_ variable"
    field, is_file = match.group(1).lower(), bool(match.group(2))
    if is_file:
        return field in SECRET_FIELDS
    return field in Settings.model_fields


def _sfsync_env_names(env) -> list[str]:
    names = list(env) if isinstance(env, dict) else [item["name"] for item in env]
    return [n for n in names if n.startswith("SFSYNC_")]


# --- docker-compose.yml -----------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(COMPOSE["services"]))
def test_compose_commands_are_real_entry_points(name):
    service = COMPOSE["services"][name]
    if "image" in service and service["image"].startswith("redis:"):
        return
    entrypoint = service.get("entrypoint", ["sfsync"])  # the image's ENTRYPOINT
    command = service["command"]
    if entrypoint == ["sfsync"]:
        assert command[0] in _cli_commands(), f"{name}: `sfsync {command[0]}` does not exist"
    else:
        assert entrypoint == ["celery"] and "workers.app:app" in command, name
        import importlib
        module, attr = command[command.index("--app") + 1].split(":")
        assert hasattr(importlib.import_module(module), attr)


def test_compose_workers_can_scale():
    worker = COMPOSE["services"]["worker"]
    assert worker["command"] == ["worker"]
    assert "container_name" not in worker and "ports" not in worker


def test_compose_has_exactly_one_beat():
    beats = [s for s in COMPOSE["services"].values() if s.get("command", [None])[0] == "beat"]
    assert len(beats) == 1
    assert beats[0].get("deploy", {}).get("replicas", 1) == 1


def test_compose_redis_persists_and_never_evicts():
    redis = COMPOSE["services"]["redis"]
    command = " ".join(redis["command"])
    assert redis["image"].startswith("redis:7")
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert redis["healthcheck"]["test"]


def test_compose_environment_uses_real_settings_and_secret_files():
    for name, service in COMPOSE["services"].items():
        for env_name in _sfsync_env_names(service.get("environment", {})):
            assert _setting_exists(env_name), f"{name}: {env_name} is not a setting"
            if env_name.endswith("_FILE"):
                secret = Path(service["environment"][env_name]).name
                assert secret in service.get("secrets", []), f"{name}: {secret} not mounted"
    for secret in COMPOSE["secrets"].values():
        assert (REPO / secret["file"]).is_file()


def test_compose_emulator_listens_beyond_its_container():
    command = COMPOSE["services"]["emulator"]["command"]
    assert command[0] == "emulator" and command[command.index("--host") + 1] == "0.0.0.0"


# --- deploy/k8s -------------------------------------------------------------------------

def _docs(kind: str) -> list[dict]:
    return [doc for docs in MANIFESTS.values() for doc in docs if doc["kind"] == kind]


def _deployment(component: str) -> dict:
    [found] = [d for d in _docs("Deployment")
               if d["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    return found


def test_manifests_are_the_expected_kinds():
    kinds = sorted(doc["kind"] for docs in MANIFESTS.values() for doc in docs)
    assert kinds == sorted(["ConfigMap", "ConfigMap", "Secret", "Deployment", "Deployment", "Service",
                            "ScaledObject", "TriggerAuthentication", "Kustomization"])
    kustomization = MANIFESTS["kustomization.yaml"][0]
    assert sorted(kustomization["resources"]) == sorted(n for n in MANIFESTS if n != "kustomization.yaml")


@pytest.mark.parametrize("component", ["worker", "beat"])
def test_pods_run_as_non_root_with_a_read_only_root(component):
    spec = _deployment(component)["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    for container in spec["containers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["args"][0] in _cli_commands()


@pytest.mark.parametrize("component", ["worker", "beat"])
def test_pod_environment_names_are_settings_and_secrets_come_from_files(component):
    spec = _deployment(component)["spec"]["template"]["spec"]
    [container] = spec["containers"]
    for name in _sfsync_env_names(container["env"]):
        assert _setting_exists(name), name
    for item in container["env"]:
        assert "value" in item and "valueFrom" not in item, "secrets are mounted files, not env values"
    secret_mounts = [v for v in spec["volumes"] if "secret" in v]
    assert secret_mounts and secret_mounts[0]["secret"]["secretName"] == "sfsync-secrets"
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    for item in container["env"]:
        if item["name"].endswith("_FILE"):
            assert str(Path(item["value"]).parent) in mounted


def test_configmap_keys_are_settings():
    config = next(d for d in _docs("ConfigMap") if d["metadata"]["name"] == "sfsync-config")
    for name in config["data"]:
        assert _setting_exists(name), name
    # secrets never live in the ConfigMap
    assert not any(ENV_NAME.match(n).group(1).lower() in SECRET_FIELDS for n in config["data"])


def test_secret_template_holds_no_real_secret():
    [secret] = _docs("Secret")
    for key, value in secret["stringData"].items():
        assert value in ("", "sfsync") or "CHANGE_ME" in value, key


def test_worker_probes_health_and_outlives_its_soft_shutdown():
    spec = _deployment("worker")["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    config = next(d for d in _docs("ConfigMap") if d["metadata"]["name"] == "sfsync-config")["data"]
    assert ports["health"] == int(config["SFSYNC_HEALTH_PORT"])
    assert ports["metrics"] == int(config["SFSYNC_METRICS_PORT"])
    assert container["resources"]["requests"] and container["resources"]["limits"]
    from workers.app import celery_config
    from schemas.settings import load_settings

    soft = celery_config(load_settings({}))["worker_soft_shutdown_timeout"]
    assert spec["terminationGracePeriodSeconds"] > soft + 30


def test_beat_is_one_replica_recreated_never_rolled():
    beat = _deployment("beat")["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"


def test_keda_scales_the_worker_on_every_event_queue():
    [scaled] = _docs("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == _deployment("worker")["metadata"]["name"]
    lists = {t["metadata"]["listName"] for t in scaled["spec"]["triggers"] if t["type"] == "redis"}
    assert lists == set(EVENT_QUEUES)


def test_metrics_service_selects_the_worker_pods():
    [service] = _docs("Service")
    labels = _deployment("worker")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


# --- deploy/Dockerfile ------------------------------------------------------------------

def test_dockerfile_is_multi_stage_non_root_with_the_cli_as_entrypoint():
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", DOCKERFILE, re.MULTILINE | re.IGNORECASE)
    assert len(stages) >= 2
    runtime = DOCKERFILE[DOCKERFILE.rindex("\nFROM"):]
    assert "--from=builder" in runtime
    users = re.findall(r"^USER\s+(\S+)", runtime, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["sfsync"\]', runtime, re.MULTILINE)
    # no compiler or package manager work in the image that runs
    assert not re.search(r"apt-get install|build-essential|gcc", runtime)
    k8s_user = _deployment("worker")["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert users[-1].split(":")[0] == str(k8s_user)


def test_dockerignore_keeps_secrets_and_the_venv_out_of_the_build():
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "tests", ".env"):
        assert entry in ignored
