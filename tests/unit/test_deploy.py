"""docker-compose.yml, deploy/Dockerfile and deploy/k8s say what the code can actually do."""

from __future__ import annotations

import json
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
    if name.removeprefix("SFSYNC_").lower() in Settings.model_fields:  # a setting that names a file itself
        return True
    if is_file:
        return field in SECRET_FIELDS
    return field in Settings.model_fields


def _sfsync_env_names(env) -> list[str]:
    names = list(env) if isinstance(env, dict) else [item["name"] for item in env]
    return [n for n in names if n.startswith("SFSYNC_")]


# --- docker-compose.yml -----------------------------------------------------------------

def _default(value: str) -> str:
    """What a compose value `${VARIABLE:-default}` is when the variable is not set."""
    match = re.fullmatch(r"\$\{[A-Z0-9_]+:-(.*)\}", value)
    return match.group(1) if match else value


@pytest.mark.parametrize("name", sorted(COMPOSE["services"]))
def test_compose_commands_are_real_entry_points(name):
    service = COMPOSE["services"][name]
    if _default(service["image"]).startswith("redis:"):
        return
    entrypoint = service.get("entrypoint", ["sfsync"])  # the image's ENTRYPOINT
    if entrypoint[0] == "/bin/sh":  # a script of sfsync commands (the keys made on first start)
        invoked = re.findall(r"\bsfsync (\S+)", service["command"][0])
        assert invoked and set(invoked) <= _cli_commands(), name
        return
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
    assert _default(redis["image"]).startswith("redis:7")
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert redis["healthcheck"]["test"]


def test_compose_environment_uses_real_settings_and_secret_files():
    for name, service in COMPOSE["services"].items():
        for env_name in _sfsync_env_names(service.get("environment", {})):
            assert _setting_exists(env_name), f"{name}: {env_name} is not a setting"
            if env_name.endswith("_FILE") and env_name.removeprefix("SFSYNC_")[:-5].lower() in SECRET_FIELDS:
                path = Path(service["environment"][env_name])
                volumes = {v.split(":")[1] for v in service.get("volumes", [])}
                if path.parent == Path("/run/secrets"):
                    assert path.name in service.get("secrets", []), f"{name}: {path.name} not mounted"
                else:
                    assert str(path.parent) in volumes, f"{name}: {path} not on a mounted volume"
    for secret in COMPOSE["secrets"].values():
        assert (REPO / _default(secret["file"])).is_file()


def test_given_the_shutdown_grace_when_compose_stops_a_worker_then_it_waits_longer():
    grace = _parse_seconds(COMPOSE["services"]["worker"]["stop_grace_period"])
    assert grace >= Settings.model_fields["shutdown_grace"].default + 10


def _parse_seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", text)
    assert match, text
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


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
    assert kinds == sorted(["ConfigMap", "ConfigMap", "ConfigMap", "ConfigMap", "Secret", "Deployment", "Deployment",
                            "Deployment", "Service", "Service",
                            "ScaledObject", "TriggerAuthentication", "Kustomization", "PodDisruptionBudget",
                            "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule"])
    kustomization = MANIFESTS["kustomization.yaml"][0]
    assert sorted(kustomization["resources"]) == sorted(n for n in MANIFESTS if n != "kustomization.yaml")


@pytest.mark.parametrize("component", ["worker", "beat", "console"])
def test_pods_run_as_non_root_with_a_read_only_root(component):
    spec = _deployment(component)["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    for container in spec["containers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["args"][0] in _cli_commands()


@pytest.mark.parametrize("component", ["worker", "beat", "console"])
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


@pytest.mark.parametrize("name", ["sfsync-config", "sfsync-console-config"])
def test_configmap_keys_are_settings(name):
    config = next(d for d in _docs("ConfigMap") if d["metadata"]["name"] == name)
    for key in config["data"]:
        assert _setting_exists(key), key
    # secrets never live in a ConfigMap
    assert not any(ENV_NAME.match(n).group(1).lower() in SECRET_FIELDS for n in config["data"])


@pytest.mark.parametrize("component", ["worker", "beat", "console"])
def test_every_pod_that_reads_the_registry_has_its_keys(component):
    [container] = _deployment(component)["spec"]["template"]["spec"]["containers"]
    names = {item["name"] for item in container["env"]}
    assert "SFSYNC_SECRET_KEYS_FILE" in names
    [secret] = _docs("Secret")
    for item in container["env"]:
        if item["value"].startswith("/run/secrets/sfsync/"):
            assert item["value"].rsplit("/", 1)[1] in secret["stringData"], item["name"]


def test_the_console_is_served_with_its_settings_and_secrets():
    console = _deployment("console")
    [container] = console["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["web"]
    config = next(d for d in _docs("ConfigMap") if d["metadata"]["name"] == "sfsync-console-config")["data"]
    names = {item["name"] for item in container["env"]}
    assert {"SFSYNC_WEB_SECRET_KEY_FILE", "SFSYNC_WEB_USERS_FILE"} <= names
    assert config["SFSYNC_WEB_HOST"] == "0.0.0.0"
    assert container["ports"][0]["containerPort"] == int(config["SFSYNC_WEB_PORT"])
    [service] = [s for s in _docs("Service") if s["metadata"]["name"] == "sfsync-console"]
    assert service["spec"]["selector"].items() <= console["spec"]["template"]["metadata"]["labels"].items()


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


def _configured_settings() -> Settings:
    from schemas.settings import load_settings

    config = next(d for d in _docs("ConfigMap") if d["metadata"]["name"] == "sfsync-config")["data"]
    return load_settings(dict(config))


def test_given_the_configured_shutdown_grace_when_a_worker_pod_is_stopped_then_kubernetes_waits_longer():
    # a worker stops within SFSYNC_SHUTDOWN_GRACE plus a second or two; a SIGKILL before that
    # leaves its batches unacknowledged until the visibility timeout
    grace = _configured_settings().shutdown_grace
    for component in ("worker", "beat"):
        spec = _deployment(component)["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] >= grace + 10, component


def test_given_the_configmap_when_loaded_then_it_is_valid_configuration_with_a_short_visibility_timeout():
    settings = _configured_settings()
    assert settings.visibility_timeout == 60


def test_every_manifest_names_its_api_version_kind_and_name():
    for file, docs in MANIFESTS.items():
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind"), file
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], file


def test_given_keda_scales_the_worker_when_the_deployment_is_applied_then_it_sets_no_replica_count():
    [scaled] = _docs("ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]["name"]
    for deployment in _docs("Deployment"):
        if deployment["metadata"]["name"] == target:
            assert "replicas" not in deployment["spec"]


@pytest.mark.parametrize("component", ["worker", "beat"])
def test_given_a_node_drain_when_pods_are_evicted_then_a_budget_covers_them_one_at_a_time(component):
    labels = _deployment(component)["spec"]["template"]["metadata"]["labels"]
    budgets = [b for b in _docs("PodDisruptionBudget")
               if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
    assert len(budgets) == 1, component
    # never minAvailable: with one replica it would block every drain of that node
    assert budgets[0]["spec"] == {"maxUnavailable": 1, "selector": budgets[0]["spec"]["selector"]}


def test_given_prometheus_operator_when_it_reads_the_servicemonitor_then_it_scrapes_the_worker_metrics_port():
    [monitor] = _docs("ServiceMonitor")
    [service] = [s for s in _docs("Service") if s["metadata"]["name"] == "sfsync-worker-metrics"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"


# --- alerts and dashboard: every metric they name exists -------------------------------

#: metrics of other exporters the alerts and dashboard read: KEDA's operator (queue backlog),
#: kube-state-metrics (replicas, readiness)
EXTERNAL_METRICS = frozenset({
    "keda_scaler_metrics_value",
    "kube_horizontalpodautoscaler_status_current_replicas",
    "kube_horizontalpodautoscaler_spec_max_replicas",
    "kube_deployment_status_replicas_unavailable",
})
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?![a-zA-Z0-9_:]*\s*\()")
_PROMQL_WORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})


def _promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords or labels."""
    stripped = re.sub(r"\{[^}]*\}", "", expr)           # label matchers
    stripped = re.sub(r"\[[^\]]*\]", "", stripped)       # ranges and subqueries
    stripped = _LABEL_LISTS.sub("", stripped)
    stripped = re.sub(r"\b\d+(?:\.\d+)?(?:e\d+)?\b", "", stripped)
    names = set()
    for match in _IDENTIFIER.finditer(stripped):
        word = match.group(0)
        if stripped[match.end():].lstrip().startswith("("):
            continue  # a function
        if word.lower() not in _PROMQL_WORDS:
            names.add(word)
    return names


def _sfsync_exposed_names() -> set[str]:
    """Every sample name workers/observability/metrics.py can expose."""
    from workers.observability import metrics

    metrics.enable()
    try:
        families = list(metrics.registry().collect())
    finally:
        metrics.disable()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {f.name + suffix for f in families for suffix in suffixes[f.type]}


def _alert_rules() -> list[dict]:
    [rule] = _docs("PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]


def _dashboard() -> dict:
    [config] = [c for c in _docs("ConfigMap") if c["metadata"]["labels"].get("grafana_dashboard") == "1"]
    [text] = config["data"].values()
    return json.loads(text)


def test_given_a_promql_expression_when_its_metrics_are_read_then_functions_labels_and_ranges_are_not_metrics():
    expr = ('sum by (code) (rate(sfsync_nope_total{outcome="x"}[5m])) / on (namespace) '
            'max(kube_foo) > 0.75 and absent(up)')
    assert _promql_metric_names(expr) == {"sfsync_nope_total", "kube_foo", "up"}


def test_given_the_alerts_when_their_expressions_are_read_then_every_metric_is_one_sfsync_or_its_exporters_define():
    exposed = _sfsync_exposed_names()
    rules = _alert_rules()
    assert rules
    for rule in rules:
        names = _promql_metric_names(rule["expr"])
        assert names, rule["alert"]
        unknown = names - exposed - EXTERNAL_METRICS
        assert not unknown, f"{rule['alert']}: {unknown} not defined in workers/observability/metrics.py"
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_given_the_alerts_when_listed_then_each_condition_operations_describes_has_one():
    exprs = " ".join(rule["expr"] for rule in _alert_rules())
    for metric in ("sfsync_events_total", "sfsync_salesforce_api_used", "sfsync_salesforce_connected",
                   "sfsync_crm_cycle_last_success_timestamp", "sfsync_crm_cycle_lag_seconds",
                   "sfsync_oldest_unacked_seconds", "keda_scaler_metrics_value",
                   "kube_deployment_status_replicas_unavailable"):
        assert metric in exprs, metric
    assert 'outcome="dead_lettered"' in exprs and 'outcome="parked"' in exprs


def test_given_the_dashboard_when_its_panels_are_read_then_every_query_names_a_defined_metric():
    exposed = _sfsync_exposed_names()
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["panels"]
    covered = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = _promql_metric_names(target["expr"])
            assert names and not names - exposed - EXTERNAL_METRICS, (panel["title"], names)
            covered |= names
    # every metric sfsync defines has a panel (histogram parts count as the histogram)
    assert {n for n in exposed if not n.endswith(("_sum", "_count"))} <= covered


def test_beat_is_one_replica_recreated_never_rolled():
    beat = _deployment("beat")["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"


def test_beat_keeps_no_schedule_on_disk_and_its_cycles_are_due_as_it_starts():
    from celery import Celery

    from workers.celery_config import celery_config
    from workers.tasks import register

    pod = _deployment("beat")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    writable = [m for m in container["volumeMounts"] if not m.get("readOnly")]
    assert [m["mountPath"] for m in writable] == ["/tmp"], "beat needs no volume for a schedule file"
    assert "workingDir" not in container
    assert not any(v.get("persistentVolumeClaim") for v in pod["volumes"])
    settings = _configured_settings()
    app = Celery("deploy-test", set_as_current=False)
    app.conf.update(celery_config(settings))
    register(app, settings)
    assert app.conf.beat_scheduler == "workers.beat_scheduler:DueAtStartScheduler"
    assert "--schedule" not in " ".join(container["args"]) and "-S" not in container["args"]


def test_worker_metrics_are_scraped_once_through_the_servicemonitor_not_annotations():
    assert len(_docs("ServiceMonitor")) == 1
    for manifest in MANIFESTS.values():
        for doc in manifest:
            for where in (doc.get("metadata", {}), doc.get("spec", {}).get("template", {}).get("metadata", {})):
                scrape = [a for a in where.get("annotations", {}) if a.startswith("prometheus.io/")]
                assert not scrape, f"{doc['kind']} {doc['metadata']['name']} also asks to be scraped: {scrape}"


def test_keda_scales_the_worker_on_every_event_queue():
    [scaled] = _docs("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == _deployment("worker")["metadata"]["name"]
    lists = {t["metadata"]["listName"] for t in scaled["spec"]["triggers"] if t["type"] == "redis"}
    assert lists == set(EVENT_QUEUES)


def test_metrics_service_selects_the_worker_pods():
    [service] = [s for s in _docs("Service") if s["metadata"]["name"] == "sfsync-worker-metrics"]
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
