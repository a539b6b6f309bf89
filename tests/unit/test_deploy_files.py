"""The shipping files hang together: compose, Render blueprint, Dockerfile, Prometheus, Grafana.

promtool (Debian's `prometheus` package, installed by scripts/ci-deps) checks the Prometheus
files; without it these tests skip locally and fail in CI (CI=true).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from server.adapters import metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "triveni.json"

# Declared in server/connectors/metrics.py and server/service_layer/fraud_metrics.py.
PSP_AND_FRAUD_COUNTERS = (
    "triveni_psp_requests_total",
    "triveni_fraud_decisions_total",
    "triveni_fraud_reasons_total",
    "triveni_fraud_signal_unavailable_total",
)
PSP_AND_FRAUD_HISTOGRAMS = (
    "triveni_psp_request_duration_seconds",
    "triveni_fraud_screen_duration_seconds",
)
# Series Prometheus itself attaches to every scrape target.
PROMETHEUS_BUILTINS = frozenset({"up"})


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# --- PromQL metric names -------------------------------------------------------------------------
_PROMQL_KEYWORDS = frozenset({
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "offset", "bool", "inf", "nan",
})


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords and label names excluded)."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![0-9A-Za-z_.$])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        token = match.group(0)
        if expr[match.end():].lstrip().startswith("(") or token.lower() in _PROMQL_KEYWORDS:
            continue
        names.add(token)
    return names


def _series_names(name: str, kind: str) -> set[str]:
    if kind == "counter":
        return {name + "_total"}
    if kind == "histogram":
        return {name + "_bucket", name + "_sum", name + "_count"}
    return {name}


def known_series() -> set[str]:
    """Every series name the service exposes (server/adapters/metrics.py + PSP and fraud)."""
    names: set[str] = set(PSP_AND_FRAUD_COUNTERS)
    for histogram in PSP_AND_FRAUD_HISTOGRAMS:
        names |= _series_names(histogram, "histogram")
    for collector in vars(metrics).values():
        if isinstance(collector, MetricWrapperBase):
            for family in collector.describe():
                names |= _series_names(family.name, family.type)
    return names


def test_promql_name_extraction_ignores_functions_labels_and_keywords() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, method) (rate(a_seconds_bucket{method!~"x|y"}[5m])))'
        ' / on (method) group_left b_total offset 5m > 1e3 and ignoring (x) c:recorded:rate5m'
    )

    assert promql_metric_names(expr) == {"a_seconds_bucket", "b_total", "c:recorded:rate5m"}


def test_known_series_cover_the_catalogue() -> None:
    series = known_series()

    assert "triveni_grpc_requests_total" in series
    assert "triveni_grpc_request_duration_seconds_bucket" in series
    assert "triveni_dependency_up" in series
    assert "triveni_psp_request_duration_seconds_bucket" in series


# --- docker-compose.yml --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = _load_yaml(ROOT / "docker-compose.yml")
    return loaded


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, str]]:
    depends = service.get("depends_on", {})
    assert isinstance(depends, dict), "depends_on must use the long form with conditions"
    return depends


def _has_healthcheck(service: dict[str, Any]) -> bool:
    check: dict[str, Any] = service.get("healthcheck") or {}
    return not check.get("disable", False) and bool(check.get("test"))


def _one_shots(compose: dict[str, Any]) -> set[str]:
    awaited = {
        name
        for service in _services(compose).values()
        for name, spec in _depends_on(service).items()
        if spec.get("condition") == "service_completed_successfully"
    }
    return {
        name for name in awaited
        if str(_services(compose)[name].get("restart", "no")) == "no"
    }


def test_compose_has_the_whole_stack(compose: dict[str, Any]) -> None:
    assert set(_services(compose)) >= {
        "postgres", "redis", "kafka", "kafka-init", "migrate", "triveni", "triveni-relay",
        "triveni-worker", "prometheus", "grafana",
    }
    assert _services(compose)["postgres"]["image"].startswith("postgres:17")
    assert _services(compose)["redis"]["image"].startswith("redis:7")
    assert _services(compose)["kafka"]["image"].startswith("apache/kafka:")


def test_every_compose_service_has_a_healthcheck_or_is_a_one_shot(compose: dict[str, Any]) -> None:
    one_shots = _one_shots(compose)
    assert one_shots == {"kafka-init", "migrate"}
    for name, service in _services(compose).items():
        assert _has_healthcheck(service) or name in one_shots, name


def test_compose_dependencies_name_existing_services_with_sound_conditions(
    compose: dict[str, Any],
) -> None:
    services = _services(compose)
    one_shots = _one_shots(compose)
    for name, service in services.items():
        for target, spec in _depends_on(service).items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert _has_healthcheck(services[target]), f"{name} waits for {target}'s health"
            elif condition == "service_completed_successfully":
                assert target in one_shots, f"{target} is not a one-shot"
            else:
                pytest.fail(f"{name} → {target}: unexpected condition {condition!r}")


def test_compose_dependency_graph_has_no_cycle(compose: dict[str, Any]) -> None:
    services = _services(compose)
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle: {' → '.join((*path, name))}"
        if name not in done:
            for target in _depends_on(services[name]):
                visit(target, (*path, name))
            done.add(name)

    for name in services:
        visit(name, ())


def test_app_services_wait_for_migrations_and_topics(compose: dict[str, Any]) -> None:
    for name in ("triveni", "triveni-relay", "triveni-worker"):
        depends = _depends_on(_services(compose)[name])
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["kafka-init"]["condition"] == "service_completed_successfully", name


def test_app_services_get_the_dependency_urls(compose: dict[str, Any]) -> None:
    for name in ("triveni", "triveni-relay", "triveni-worker", "migrate"):
        environment = _services(compose)[name]["environment"]
        assert {"POSTGRES_URL", "REDIS_URL", "KAFKA_BOOTSTRAP"} <= set(environment), name
        assert environment["KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert "@postgres:5432/" in environment["POSTGRES_URL"]
        assert environment["REDIS_URL"].startswith("redis://redis:6379")


def test_app_services_run_the_cli_commands(compose: dict[str, Any]) -> None:
    commands = {name: _services(compose)[name]["command"] for name in
                ("triveni", "triveni-relay", "triveni-worker", "migrate")}

    assert commands == {
        "triveni": ["python", "-m", "server", "serve"],
        "triveni-relay": ["python", "-m", "server", "relay"],
        "triveni-worker": ["python", "-m", "server", "worker"],
        "migrate": ["python", "-m", "server", "migrate"],
    }


def test_server_publishes_grpc_and_http_ports(compose: dict[str, Any]) -> None:
    ports = {str(port).split(":")[-1] for port in _services(compose)["triveni"]["ports"]}

    assert {"50051", "8080"} <= ports


def test_kafka_runs_in_kraft_mode(compose: dict[str, Any]) -> None:
    environment = _services(compose)["kafka"]["environment"]

    assert set(environment["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert environment["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert "CLUSTER_ID" in environment
    assert not any("zookeeper" in str(service).lower() for service in _services(compose).values())


def test_kafka_init_creates_every_topic(compose: dict[str, Any]) -> None:
    script = "\n".join(_services(compose)["kafka-init"]["command"])
    created = set(re.findall(r"^\s*create\s+(\S+)\s+\d+\s+\S+", script, flags=re.MULTILINE))

    assert created >= {
        "payments.events", "payments.retry.5s", "payments.retry.30s", "payments.retry.5m",
        "payments.retry.1h", "payments.dlq", "merchant.webhooks.dlq",
    }
    assert any(topic.startswith("merchant.webhooks.retry.") for topic in created)
    assert "--if-not-exists" in script


def test_observability_services_mount_files_that_exist(compose: dict[str, Any]) -> None:
    for name in ("prometheus", "grafana"):
        for volume in _services(compose)[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


# --- render.yaml -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def blueprint() -> dict[str, Any]:
    loaded: dict[str, Any] = _load_yaml(ROOT / "render.yaml")
    return loaded


def _render_services(blueprint: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {service["name"]: service for service in blueprint["services"]}


def _env(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["key"]: variable for variable in service.get("envVars", [])}


def test_render_blueprint_has_web_private_workers_keyvalue_and_database(
    blueprint: dict[str, Any],
) -> None:
    services = _render_services(blueprint)
    types = {name: service["type"] for name, service in services.items()}

    assert types == {
        "triveni": "web", "triveni-grpc": "pserv", "triveni-relay": "worker",
        "triveni-worker": "worker", "triveni-kv": "keyvalue",
    }
    assert services["triveni"]["healthCheckPath"] == "/healthz"
    assert services["triveni"]["preDeployCommand"] == "python -m server migrate"
    assert services["triveni-relay"]["dockerCommand"] == "python -m server relay"
    assert services["triveni-worker"]["dockerCommand"] == "python -m server worker"
    assert [database["postgresMajorVersion"] for database in blueprint["databases"]] == ["17"]


def test_render_app_services_are_wired_to_postgres_keyvalue_and_external_kafka(
    blueprint: dict[str, Any],
) -> None:
    services = _render_services(blueprint)
    databases = {database["name"] for database in blueprint["databases"]}
    for name, service in services.items():
        if service["type"] == "keyvalue":
            continue
        assert service["runtime"] == "docker", name
        env = _env(service)
        assert env["POSTGRES_URL"]["fromDatabase"]["name"] in databases, name
        redis = env["REDIS_URL"]["fromService"]
        assert services[redis["name"]]["type"] == redis["type"] == "keyvalue", name
        assert env["KAFKA_BOOTSTRAP"] == {"key": "KAFKA_BOOTSTRAP", "sync": False}, name
        assert env["TRIVENI_ENV"]["value"] == "production", name
        assert env["TRIVENI_RUN_WORKERS"]["value"] == "false", name


def test_render_web_service_listens_where_render_routes(blueprint: dict[str, Any]) -> None:
    env = _env(_render_services(blueprint)["triveni"])

    assert env["PORT"]["value"] == env["TRIVENI_HTTP_PORT"]["value"] == "8080"


# --- Dockerfile --------------------------------------------------------------------------------
def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def test_dockerfile_is_multi_stage_on_python_slim() -> None:
    instructions = _dockerfile_instructions()
    args = dict(
        rest.split("=", 1) for keyword, rest in instructions if keyword == "ARG" and "=" in rest
    )
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]

    assert len(froms) >= 2
    assert any(re.search(r"\bAS builder\b", rest, re.IGNORECASE) for rest in froms)
    runtime_image = froms[-1].split()[0].replace("${PYTHON_VERSION}", args["PYTHON_VERSION"])
    assert runtime_image == "python:3.12-slim"
    assert any(keyword == "COPY" and "--from=builder" in rest for keyword, rest in _final_stage())


def test_dockerfile_builds_wheels_of_the_server_and_the_client() -> None:
    runs = " ".join(rest for keyword, rest in _dockerfile_instructions() if keyword == "RUN")

    assert re.search(r"pip wheel .*\./clients", runs)
    assert re.search(r"pip wheel .* \.(\s|$)", runs)


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [rest for keyword, rest in _final_stage() if keyword == "USER"]

    assert users, "the runtime stage sets no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_dockerfile_exposes_ports_checks_health_and_serves() -> None:
    final = _final_stage()
    exposed = {port for keyword, rest in final if keyword == "EXPOSE" for port in rest.split()}
    healthchecks = [rest for keyword, rest in final if keyword == "HEALTHCHECK"]
    cmds = [json.loads(rest) for keyword, rest in final if keyword == "CMD"]

    assert {"50051", "8080"} <= exposed
    assert healthchecks and "urllib" in healthchecks[0] and "127.0.0.1" in healthchecks[0]
    assert "/healthz" in healthchecks[0]
    assert cmds[-1] == ["python", "-m", "server", "serve"]


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())

    assert {".git", ".venv", ".data", ".env"} <= ignored


# --- Prometheus (promtool) ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not installed (run scripts/ci-deps as root: Debian's prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _run(command: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_prometheus_config_is_valid(promtool: str) -> None:
    result = _run([promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])

    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_are_valid(promtool: str) -> None:
    result = _run([promtool, "check", "rules", str(PROMETHEUS_DIR / "alerts.yml")])

    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_fire_on_the_scenarios_they_exist_for(promtool: str) -> None:
    result = _run([promtool, "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS_DIR)

    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query:{index}",
         "expr": expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")}
        for index, expr in enumerate(_dashboard_exprs())
    ]
    rules_file = tmp_path / "dashboard_rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    result = _run([promtool, "check", "rules", str(rules_file)])

    assert result.returncode == 0, result.stdout + result.stderr


def _alert_rules() -> Iterator[dict[str, Any]]:
    for group in _load_yaml(PROMETHEUS_DIR / "alerts.yml")["groups"]:
        yield from group["rules"]


def test_alert_rules_only_reference_exported_metrics() -> None:
    recorded = {rule["record"] for rule in _alert_rules() if "record" in rule}
    allowed = known_series() | recorded | PROMETHEUS_BUILTINS
    for rule in _alert_rules():
        unknown = promql_metric_names(rule["expr"]) - allowed
        assert not unknown, f"{rule.get('alert') or rule.get('record')} uses unknown {unknown}"


def test_alert_rules_cover_the_promised_failure_modes() -> None:
    alerts = {rule["alert"] for rule in _alert_rules() if "alert" in rule}

    assert alerts >= {
        "TriveniConnectorSuccessRateDrop", "TriveniGrpcLatencyHigh", "TriveniOutboxLag",
        "TriveniWebhookSignatureFailures", "TriveniDependencyDown",
    }
    for rule in _alert_rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"page", "warning"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]


def test_prometheus_scrapes_every_triveni_process_on_8080() -> None:
    config = _load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "triveni")
    targets = {target for static in job["static_configs"] for target in static["targets"]}

    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert targets == {"triveni:8080", "triveni-relay:8080", "triveni-worker:8080"}
    assert config["rule_files"] == ["alerts.yml"]


# --- Grafana -----------------------------------------------------------------------------------
def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard_exprs() -> list[str]:
    return [
        target["expr"]
        for panel in _panels(_dashboard()["panels"])
        for target in panel.get("targets", [])
    ]


def test_every_dashboard_panel_queries_prometheus() -> None:
    for panel in _panels(_dashboard()["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]


def test_dashboard_panels_only_reference_exported_metrics() -> None:
    allowed = known_series()
    for panel in _panels(_dashboard()["panels"]):
        for target in panel.get("targets", []):
            unknown = promql_metric_names(target["expr"]) - allowed
            assert not unknown, f"panel {panel['title']!r} uses unknown {unknown}"


def test_dashboard_has_the_promised_panels() -> None:
    referenced = {name for expr in _dashboard_exprs() for name in promql_metric_names(expr)}

    assert {
        "triveni_payment_transitions_total",              # payments/s by status, success rate
        "triveni_grpc_request_duration_seconds_bucket",   # p50 / p99 latency
        "triveni_fraud_decisions_total",                  # fraud decisions
        "triveni_outbox_oldest_unpublished_age_seconds",  # outbox lag
        "triveni_webhooks_received_total",                # webhook results
    } <= referenced


def test_dashboard_uses_the_provisioned_datasource() -> None:
    provisioned = _load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    uids = {source["uid"] for source in provisioned["datasources"]}
    providers = _load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "triveni.yml")

    for panel in _panels(_dashboard()["panels"]):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in uids, panel["title"]
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
