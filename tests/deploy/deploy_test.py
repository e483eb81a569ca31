#!/usr/bin/env python3
"""Checks of deploy/ (Docker, Kubernetes, Prometheus, Grafana, systemd) and docs/operations.md.

    deploy_test.py CHECK --source-dir DIR [--pagodad PATH]

Each CHECK is one ctest (tests/deploy/CMakeLists.txt). Exit status: 0 passed, 1 failed, 77
skipped (a tool it needs is missing: promtool, prometheus, python3-yaml, or pagodad not built
yet). Only 127.0.0.1 is ever bound; every wait is bounded.

The metric checks run twice over: against EXPORTED below (the metrics the daemon documents) in
every build, and against a scrape of the real pagodad (check "daemon") once it is built.
"""

import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

SKIP = 77

# The daemon's metrics: name -> (type, {label: allowed values}). Every series also has
# model_name. Histograms export NAME_bucket{le}, NAME_sum and NAME_count.
EXPORTED = {
    "pagoda_num_requests_running": ("gauge", {}),
    "pagoda_num_requests_waiting": ("gauge", {}),
    "pagoda_kv_cache_usage_ratio": ("gauge", {}),
    "pagoda_kv_cache_blocks": ("gauge", {"state": {"used", "cached", "free"}}),
    "pagoda_kv_cache_capacity_blocks": ("gauge", {}),
    "pagoda_cache_config_info": (
        "gauge", {"block_size": None, "num_blocks": None, "kv_cache_dtype": None}),
    "pagoda_kv_cache_evictions_total": ("counter", {}),
    "pagoda_prefix_cache_queried_tokens_total": ("counter", {}),
    "pagoda_prefix_cache_hit_tokens_total": ("counter", {}),
    "pagoda_num_preemptions_total": ("counter", {}),
    "pagoda_request_success_total": ("counter", {"finished_reason": {"stop", "length", "abort"}}),
    "pagoda_requests_rejected_total": ("counter", {"reason": {
        "invalid_field", "prompt_too_long", "queue_full", "kv_cache_too_small", "draining",
        "engine_failure", "unauthenticated"}}),
    "pagoda_engine_healthy": ("gauge", {}),
    "pagoda_prompt_tokens_total": ("counter", {}),
    "pagoda_generation_tokens_total": ("counter", {}),
    "pagoda_time_to_first_token_seconds": ("histogram", {}),
    "pagoda_inter_token_latency_seconds": ("histogram", {}),
    "pagoda_request_time_per_output_token_seconds": ("histogram", {}),
    "pagoda_e2e_request_latency_seconds": ("histogram", {}),
    "pagoda_request_queue_time_seconds": ("histogram", {}),
    "pagoda_request_prompt_tokens": ("histogram", {}),
    "pagoda_request_generation_tokens": ("histogram", {}),
    "pagoda_iteration_tokens": ("histogram", {}),
    "pagoda_engine_step_duration_seconds": ("histogram", {}),
}
# Labels Prometheus or the dashboard's variables add; never checked against the daemon.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "model_name", "le"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

GRPC_PORT = 50051  # pagodad's default --port
METRICS_PORT = 9400  # pagodad's default --metrics-port
# pagodad's shutdown after the drain: up to 5 s aborting what is left, up to 5 s closing gRPC.
SHUTDOWN_AFTER_DRAIN_S = 10
DEFAULT_DRAIN_TIMEOUT_S = 30


class Skip(Exception):
    pass


class Failures:
    """Collects failed expectations so that one run reports all of them."""

    def __init__(self):
        self.messages = []

    def check(self, condition, message):
        if not condition:
            self.messages.append(message)
        return condition


# ---- reading the files --------------------------------------------------------------------------

def need_yaml():
    try:
        import yaml  # noqa: F401  (python3-yaml)
    except ImportError as error:
        raise Skip("python3-yaml is not installed") from error
    import yaml
    return yaml


def need_tool(name):
    path = shutil.which(name)
    if path is None:
        raise Skip(f"{name} is not installed")
    return path


def load_yaml_docs(path):
    yaml = need_yaml()
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def k8s_objects(src):
    """Every object of deploy/k8s, by (kind, name)."""
    objects = {}
    for path in sorted((src / "deploy/k8s").rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_yaml_docs(path):
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def dashboard(src):
    with open(src / "deploy/grafana/pagoda-dashboard.json") as f:
        return json.load(f)


def dashboard_panels(dash):
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def dashboard_exprs(dash):
    """(where, PromQL) of every query of the dashboard."""
    for panel in dashboard_panels(dash):
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} ({panel['title']}) {target['refId']}", target["expr"]


def dashboard_variable_queries(dash):
    for variable in dash.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            yield f"variable {variable['name']}", query.get("query") if isinstance(
                query, dict) else query


def alert_rules(src):
    yaml = need_yaml()
    with open(src / "deploy/prometheus/alerts.yml") as f:
        groups = yaml.safe_load(f)["groups"]
    return [rule for group in groups for rule in group["rules"]]


def keda_queries(src):
    for (kind, name), obj in k8s_objects(src).items():
        if kind == "ScaledObject":
            for trigger in obj["spec"]["triggers"]:
                if trigger["type"] == "prometheus":
                    yield f"ScaledObject {name} trigger {trigger.get('name', '')}", trigger[
                        "metadata"]["query"]


def all_queries(src, include_yaml=True):
    """(where, PromQL or label_values query) of every query in deploy/."""
    dash = dashboard(src)
    queries = list(dashboard_exprs(dash)) + list(dashboard_variable_queries(dash))
    if include_yaml:
        queries += [(f"alert {r['alert']}", r["expr"]) for r in alert_rules(src) if "alert" in r]
        queries += list(keda_queries(src))
    return queries


# ---- PromQL, roughly ----------------------------------------------------------------------------

METRIC_RE = re.compile(r"\b(pagoda_[a-zA-Z0-9_]+)")
SELECTOR_RE = re.compile(r"\b(pagoda_[a-zA-Z0-9_]+)\s*\{([^}]*)\}")
MATCHER_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
RATE_RE = re.compile(r"\b(rate|irate|increase)\s*\(\s*(pagoda_[a-zA-Z0-9_]+)")
QUANTILE_RE = re.compile(r"histogram_quantile\s*\(\s*[0-9.]+\s*,.*?\b(pagoda_[a-zA-Z0-9_]+)",
                         re.S)


def family_of(series_name):
    """The EXPORTED family a series name belongs to, or None."""
    if series_name in EXPORTED:
        return series_name
    for suffix in HISTOGRAM_SUFFIXES:
        base = series_name[: -len(suffix)] if series_name.endswith(suffix) else None
        if base and EXPORTED.get(base, ("",))[0] == "histogram":
            return base
    return None


def check_query_against(failures, where, query, series_names, series_type, label_values):
    """Checks one query's metric names, functions and label matchers against a set of series.

    series_names: every series name exported; series_type(name) -> "counter", "gauge",
    "histogram" (for NAME_bucket/_sum/_count) or None; label_values(name, label) -> the set of
    values seen, or None when any value is fine.
    """
    for name in sorted(set(METRIC_RE.findall(query))):
        failures.check(name in series_names,
                       f"{where}: uses {name}, which the daemon does not export")
    for function, name in RATE_RE.findall(query):
        failures.check(series_type(name) in ("counter", "histogram"),
                       f"{where}: {function}() of {name}, which is a {series_type(name)}, "
                       f"not a counter")
    for name in QUANTILE_RE.findall(query):
        failures.check(name.endswith("_bucket") and series_type(name) == "histogram",
                       f"{where}: histogram_quantile over {name}, not a histogram's _bucket")
    for name, matchers in SELECTOR_RE.findall(query):
        for label, op, value in MATCHER_RE.findall(matchers):
            if label in TARGET_LABELS or "$" in value or name not in series_names:
                continue
            allowed = label_values(name, label)
            if not failures.check(allowed is not None or op in ("=~", "!~"),
                                  f"{where}: {name} has no label {label}"):
                continue
            if op == "=" and allowed is not None and allowed != "any":
                failures.check(value in allowed,
                               f'{where}: {name}{{{label}="{value}"}} never exists '
                               f"(values: {sorted(allowed)})")


def static_series():
    names = set()
    for name, (kind, _) in EXPORTED.items():
        names.update([name] if kind != "histogram" else [name + s for s in HISTOGRAM_SUFFIXES])
    return names


def static_type(series_name):
    family = family_of(series_name)
    return EXPORTED[family][0] if family else None


def static_label_values(series_name, label):
    family = family_of(series_name)
    if family is None or label not in EXPORTED[family][1]:
        return None
    values = EXPORTED[family][1][label]
    return "any" if values is None else values


def substitute_grafana_variables(expr):
    """A Grafana query as PromQL: interval variables become 5m, the others '.*'."""
    expr = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "5m", expr)
    return re.sub(r"\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?", ".*", expr)


# ---- checks -------------------------------------------------------------------------------------

def check_promtool_config(src, _args):
    promtool = need_tool("promtool")
    run([promtool, "check", "config", str(src / "deploy/prometheus/prometheus.yml")])


def check_promtool_rules(src, _args):
    """promtool check rules on alerts.yml, and on every dashboard and KEDA query as PromQL."""
    promtool = need_tool("promtool")
    yaml = need_yaml()
    run([promtool, "check", "rules", str(src / "deploy/prometheus/alerts.yml")])
    rules = []
    for i, (where, query) in enumerate(all_queries(src)):
        if where.startswith(("variable", "alert")):
            continue  # label_values() is Grafana's, not PromQL; alerts were checked above
        rules.append({"record": f"pagoda_deploy_test:query_{i}",
                      "expr": substitute_grafana_variables(query)})
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "queries.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}))
        run([promtool, "check", "rules", str(path)])
    print(f"{len(rules)} dashboard and KEDA queries parse as PromQL")


def check_promtool_test(src, _args):
    """promtool test rules, and every alert has a firing case in the tests."""
    promtool = need_tool("promtool")
    yaml = need_yaml()
    run([promtool, "test", "rules", str(src / "deploy/prometheus/alerts_test.yml")])
    with open(src / "deploy/prometheus/alerts_test.yml") as f:
        tests = yaml.safe_load(f)["tests"]
    # promtool compares the exact set of alerts at each eval_time, so a firing case also checks
    # that the other series of its test stay quiet.
    fired = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])
             if case.get("exp_alerts")}
    failures = Failures()
    for rule in alert_rules(src):
        if "alert" in rule:
            failures.check(rule["alert"] in fired,
                           f"alert {rule['alert']} has no firing case in alerts_test.yml")
    return failures


def check_dashboard(src, _args):
    """The dashboard is a well-formed Grafana dashboard over exported metrics only."""
    failures = Failures()
    dash = dashboard(src)
    ids = [panel["id"] for panel in dashboard_panels(dash)]
    failures.check(len(ids) == len(set(ids)), f"duplicate panel ids: {ids}")
    occupied = {}
    for panel in dashboard_panels(dash):
        pos = panel["gridPos"]
        failures.check(pos["x"] + pos["w"] <= 24, f"panel {panel['id']} is wider than the grid")
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                other = occupied.setdefault((x, y), panel["id"])
                failures.check(other == panel["id"],
                               f"panels {other} and {panel['id']} overlap at ({x}, {y})")
        if panel["type"] != "row":
            failures.check(panel.get("targets"), f"panel {panel['id']} has no query")
            failures.check(panel.get("datasource", {}).get("uid") == "${datasource}",
                           f"panel {panel['id']} does not use the $datasource variable")
    titles = " ".join(panel["title"].lower() for panel in dashboard_panels(dash))
    for needed in ("kv cache blocks", "usage", "running", "waiting", "preemption",
                   "hit rate", "throughput", "time to first token", "inter-token",
                   "end-to-end"):
        failures.check(needed in titles, f"no dashboard panel about '{needed}'")
    quantiles_of = {name for _, expr in dashboard_exprs(dash)
                    for name in QUANTILE_RE.findall(expr)}
    for needed in ("pagoda_time_to_first_token_seconds_bucket",
                   "pagoda_inter_token_latency_seconds_bucket",
                   "pagoda_e2e_request_latency_seconds_bucket"):
        failures.check(needed in quantiles_of, f"no histogram_quantile over {needed}")
    queries = all_queries(src, include_yaml=importable("yaml"))
    if not importable("yaml"):
        print("python3-yaml missing: checked the dashboard's queries only")
    for where, query in queries:
        check_query_against(failures, where, query, static_series(), static_type,
                            static_label_values)
    return failures


def check_runbooks(src, _args):
    """Every alert has a summary, a severity and a runbook section in docs/operations.md."""
    failures = Failures()
    doc = (src / "docs/operations.md").read_text()
    anchors = {github_anchor(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", doc, re.M)}
    for rule in alert_rules(src):
        if "alert" not in rule:
            continue
        name = rule["alert"]
        failures.check(rule.get("labels", {}).get("severity") in ("critical", "warning", "info"),
                       f"alert {name}: severity label missing")
        annotations = rule.get("annotations", {})
        failures.check(annotations.get("summary"), f"alert {name}: no summary")
        url = annotations.get("runbook_url", "")
        failures.check(url.startswith("docs/operations.md#"),
                       f"alert {name}: runbook_url {url!r} is not a docs/operations.md section")
        failures.check(url.split("#")[-1] in anchors,
                       f"alert {name}: docs/operations.md has no section #{url.split('#')[-1]}")
    for metric in EXPORTED:
        failures.check(metric in doc, f"docs/operations.md does not explain {metric}")
    return failures


def github_anchor(heading):
    anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return anchor.replace(" ", "-")


def importable(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def check_k8s(src, _args):
    """The manifests parse and agree with each other and with pagodad."""
    yaml = need_yaml()
    failures = Failures()
    k8s = src / "deploy/k8s"
    listed = set(yaml.safe_load((k8s / "kustomization.yaml").read_text())["resources"])
    for path in sorted(k8s.rglob("*.yaml")):
        rel = str(path.relative_to(k8s))
        if rel == "kustomization.yaml":
            continue
        failures.check(rel in listed, f"{rel} is not in kustomization.yaml")
        for doc in load_yaml_docs(path):
            for key in ("apiVersion", "kind", "metadata"):
                failures.check(key in doc, f"{rel}: an object without {key}")
    for rel in listed:
        failures.check((k8s / rel).exists(), f"kustomization.yaml lists missing {rel}")
    objects = k8s_objects(src)

    deployment = objects[("Deployment", "pagoda")]
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    container = spec["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    failures.check(set(ports) >= {"grpc", "metrics"}, f"container ports {ports}")
    failures.check(ports.get("grpc") == GRPC_PORT and ports.get("metrics") == METRICS_PORT,
                   f"container ports {ports} are not the image's {GRPC_PORT}/{METRICS_PORT}")
    selector = deployment["spec"]["selector"]["matchLabels"]
    failures.check(selects(selector, pod_labels), "the Deployment's selector misses its pods")

    probes = {kind: container.get(kind + "Probe") for kind in ("startup", "readiness", "liveness")}
    for kind, probe in probes.items():
        if not failures.check(probe and "grpc" in probe, f"no gRPC {kind} probe"):
            continue
        failures.check(probe["grpc"]["port"] == ports.get("grpc"),
                       f"{kind} probe port {probe['grpc']['port']} is not the grpc port")
    if probes["readiness"] and "grpc" in probes["readiness"]:
        failures.check(probes["readiness"]["grpc"].get("service") == "pagoda.v1.TextGeneration",
                       "readiness must probe service pagoda.v1.TextGeneration")

    args = container.get("args", [])
    drain = flag_value(args, "drain-timeout", DEFAULT_DRAIN_TIMEOUT_S)
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_stop_s = float(pre_stop[-1]) if pre_stop and pre_stop[0].endswith("sleep") else 0
    grace = spec.get("terminationGracePeriodSeconds", 30)
    failures.check(grace > pre_stop_s + drain + SHUTDOWN_AFTER_DRAIN_S,
                   f"terminationGracePeriodSeconds {grace} <= preStop {pre_stop_s} + "
                   f"--drain-timeout {drain} + {SHUTDOWN_AFTER_DRAIN_S}")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    shm = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/dev/shm"]
    failures.check(shm and volumes.get(shm[0]["name"], {}).get("emptyDir", {}).get("medium")
                   == "Memory", "/dev/shm is not an emptyDir with medium Memory")
    resources = container.get("resources", {})
    failures.check(resources.get("limits", {}).get("nvidia.com/gpu"), "no nvidia.com/gpu limit")
    failures.check({"cpu", "memory"} <= set(resources.get("requests", {})),
                   "cpu and memory requests missing")
    security = spec.get("securityContext", {})
    failures.check(security.get("runAsNonRoot") is True and security.get("runAsUser", 0) != 0,
                   "the pod must run as a non-root uid")
    failures.check(container.get("securityContext", {}).get("allowPrivilegeEscalation") is False,
                   "allowPrivilegeEscalation must be false")

    service = objects[("Service", "pagoda")]
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    failures.check(set(service_ports) == {"grpc", "metrics"},
                   f"Service ports must be named grpc and metrics: {list(service_ports)}")
    for name, port in service_ports.items():
        failures.check(port.get("targetPort") in (name, ports.get(name)),
                       f"Service port {name} targets {port.get('targetPort')}")
    failures.check(selects(service["spec"]["selector"], pod_labels),
                   "the Service does not select the pods")
    headless = objects[("Service", "pagoda-headless")]
    failures.check(headless["spec"].get("clusterIP") == "None", "pagoda-headless is not headless")
    failures.check(selects(headless["spec"]["selector"], pod_labels),
                   "pagoda-headless does not select the pods")

    monitor = objects[("ServiceMonitor", "pagoda")]
    failures.check(selects(monitor["spec"]["selector"]["matchLabels"],
                           service["metadata"]["labels"]),
                   "the ServiceMonitor does not select the pagoda Service")
    failures.check(not selects(monitor["spec"]["selector"]["matchLabels"],
                               headless["metadata"]["labels"]),
                   "the ServiceMonitor also selects the headless Service (double scrape)")
    for endpoint in monitor["spec"]["endpoints"]:
        failures.check(endpoint["port"] in service_ports,
                       f"ServiceMonitor port {endpoint['port']} is not a Service port")

    pdb = objects[("PodDisruptionBudget", "pagoda")]
    failures.check(selects(pdb["spec"]["selector"]["matchLabels"], pod_labels),
                   "the PodDisruptionBudget does not select the pods")

    scaled = objects[("ScaledObject", "pagoda")]
    failures.check(scaled["spec"]["scaleTargetRef"]["name"] == "pagoda",
                   "the ScaledObject does not scale the pagoda Deployment")
    failures.check(any("pagoda_num_requests_waiting" in trigger["metadata"].get("query", "")
                       for trigger in scaled["spec"]["triggers"]),
                   "no autoscaling trigger on pagoda_num_requests_waiting")

    rule = objects[("PrometheusRule", "pagoda")]
    with open(src / "deploy/prometheus/alerts.yml") as f:
        failures.check(rule["spec"]["groups"] == yaml.safe_load(f)["groups"],
                       "deploy/k8s/prometheusrule.yaml differs from deploy/prometheus/alerts.yml:"
                       " run deploy/prometheus/make_prometheusrule.py")

    policy = objects[("NetworkPolicy", "pagoda")]
    failures.check(selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels),
                   "the NetworkPolicy does not select the pods")
    for rule_ in policy["spec"]["ingress"]:
        for port in rule_.get("ports", []):
            failures.check(port["port"] in ports, f"NetworkPolicy port {port['port']} unknown")

    envoy = yaml.safe_load(objects[("ConfigMap", "pagoda-envoy")]["data"]["envoy.yaml"])
    cluster = envoy["static_resources"]["clusters"][0]
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"][
        "address"]["socket_address"]
    namespace = yaml.safe_load((k8s / "kustomization.yaml").read_text())["namespace"]
    failures.check(address["address"] == f"pagoda-headless.{namespace}.svc.cluster.local",
                   f"Envoy resolves {address['address']}, not the headless Service")
    failures.check(address["port_value"] == GRPC_PORT, "Envoy's upstream port is not grpc")
    failures.check(cluster["health_checks"][0]["grpc_health_check"]["service_name"]
                   == "pagoda.v1.TextGeneration", "Envoy must health-check the service")
    return failures


def selects(selector, labels):
    return all(labels.get(key) == value for key, value in selector.items())


def flag_value(args, name, default):
    """The last --name=VALUE or --name VALUE in args, as a float."""
    value = default
    for i, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            value = float(arg.split("=", 1)[1])
        elif arg == f"--{name}" and i + 1 < len(args):
            value = float(args[i + 1])
    return value


def systemd_unit(path):
    """A unit file as {section: [(key, value)]}."""
    sections, current = {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
        else:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def seconds(text):
    match = re.fullmatch(r"(\d+)\s*(s|sec|min|m)?", text)
    if not match:
        raise ValueError(f"cannot read a duration from {text!r}")
    return int(match.group(1)) * (60 if match.group(2) in ("min", "m") else 1)


def check_systemd(src, _args):
    failures = Failures()
    unit_path = src / "deploy/systemd/pagodad.service"
    dropin_path = src / "deploy/systemd/pagodad.service.d/cuda.conf"
    service = dict(systemd_unit(unit_path)["Service"])
    failures.check(service.get("KillSignal") == "SIGTERM", "KillSignal must be SIGTERM")
    for path in (unit_path, dropin_path):
        exec_starts = [v for k, v in systemd_unit(path)["Service"] if k == "ExecStart" and v]
        drain = flag_value(exec_starts[-1].split(), "drain-timeout", DEFAULT_DRAIN_TIMEOUT_S)
        failures.check(seconds(service["TimeoutStopSec"]) > drain + SHUTDOWN_AFTER_DRAIN_S,
                       f"{path.name}: TimeoutStopSec {service['TimeoutStopSec']} <= "
                       f"--drain-timeout {drain} + {SHUTDOWN_AFTER_DRAIN_S}")
        failures.check("--host=127.0.0.1" in exec_starts[-1],
                       f"{path.name}: pagodad must listen on 127.0.0.1 by default")
    failures.check(service.get("DynamicUser") == "yes" or service.get("User") not in (None, "root"),
                   "the unit must not run as root")
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes")):
        failures.check(service.get(key) == value, f"{key}={value} missing")
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("systemd-analyze is not installed: skipped systemd-analyze verify")
        return failures
    # verify needs ExecStart's binary to exist: point it at /bin/true in a scratch copy.
    with tempfile.TemporaryDirectory() as tmp:
        scratch = pathlib.Path(tmp)
        (scratch / "pagodad.service.d").mkdir()
        for path, rel in ((unit_path, "pagodad.service"),
                          (dropin_path, "pagodad.service.d/cuda.conf")):
            (scratch / rel).write_text(path.read_text().replace("/usr/local/bin/pagodad",
                                                                "/bin/true"))
        result = subprocess.run([analyze, "verify", "--man=no", "pagodad.service"], cwd=scratch,
                                env=dict(os.environ, SYSTEMD_UNIT_PATH=f"{scratch}:"),
                                capture_output=True, text=True, timeout=60)
        output = (result.stdout + result.stderr).strip()
        failures.check(result.returncode == 0 and "pagodad.service" not in output,
                       f"systemd-analyze verify: {output}")
    return failures


def dockerfile_instructions(path):
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
            for line in (raw.strip() for raw in text.splitlines()) if line]


def check_docker(src, args):
    failures = Failures()
    for name in ("Dockerfile.cpu", "Dockerfile.cuda"):
        instructions = dockerfile_instructions(src / "deploy/docker" / name)
        kinds = [kind for kind, _ in instructions]
        failures.check(kinds.count("FROM") >= 2, f"{name}: not a multi-stage build")
        runs = " ".join(rest for kind, rest in instructions if kind == "RUN")
        failures.check("./scripts/install-deps.sh" in runs,
                       f"{name}: the build does not use scripts/install-deps.sh")
        failures.check("deploy/docker/runtime-packages.sh" in runs,
                       f"{name}: the runtime packages do not come from runtime-packages.sh")
        users = [rest for kind, rest in instructions if kind == "USER"]
        failures.check(users and re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]),
                       f"{name}: the final USER must be a numeric non-root uid")
        exposed = {int(p.split("/")[0]) for kind, rest in instructions if kind == "EXPOSE"
                   for p in rest.split()}
        failures.check(exposed == {GRPC_PORT, METRICS_PORT}, f"{name}: EXPOSE {exposed}")
        entrypoint = json.loads(next(rest for kind, rest in instructions if kind == "ENTRYPOINT"))
        for flag in (f"--port={GRPC_PORT}", f"--metrics-port={METRICS_PORT}", "--host=0.0.0.0"):
            failures.check(flag in entrypoint, f"{name}: ENTRYPOINT lacks {flag}")
    ignore = (src / ".dockerignore").read_text().split()
    for pattern in (".git", "build", "build-*"):
        failures.check(pattern in ignore, f".dockerignore does not exclude {pattern}")
    script = src / "deploy/docker/runtime-packages.sh"
    failures.check(os.access(script, os.X_OK), "runtime-packages.sh is not executable")
    pagodad = args.pagodad
    if pagodad and os.path.exists(pagodad) and shutil.which("dpkg-query"):
        result = subprocess.run([str(script), pagodad], capture_output=True, text=True,
                                timeout=60)
        packages = result.stdout.split()
        # A CUDA build links cuBLASLt. The CUDA image installs it from NVIDIA's apt repository,
        # which dpkg knows; a toolkit unpacked under /usr/local/cuda* (as on CI) it cannot.
        unowned = re.findall(r"no Debian package owns (\S+)", result.stderr)
        toolkit = [u for u in unowned if u.startswith("/usr/local/cuda")
                   and os.path.basename(u).startswith("libcublas")]
        failures.check(result.returncode == 0 or (unowned and toolkit == unowned),
                       f"runtime-packages.sh failed: {result.stderr}")
        if toolkit:
            print("not from a Debian package (a hand-installed CUDA toolkit):", " ".join(toolkit))
        failures.check(any(p.startswith("libgrpc++") for p in packages),
                       f"runtime-packages.sh found no gRPC runtime package: {packages}")
        print("runtime packages of pagodad:", " ".join(packages))
    else:
        print("pagodad not built: runtime-packages.sh not run")
    return failures


# ---- the real daemon ----------------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_pagodad(args):
    if not args.pagodad:
        raise Skip("the pagodad target does not exist in this build tree yet")
    if not os.access(args.pagodad, os.X_OK):
        raise Skip(f"pagodad is not built: {args.pagodad}")
    return os.path.abspath(args.pagodad)


def daemon_command(pagodad, grpc_port, metrics_port):
    # dummy:tiny loads in milliseconds; one kernel thread leaves the shared cores alone.
    return [pagodad, "--host=127.0.0.1", f"--port={grpc_port}",
            f"--metrics-port={metrics_port}", "--model=dummy:tiny", "--threads=1",
            "--drain-timeout=5"]


def scrape_when_loaded(process, metrics_port, log_path, deadline_s=60):
    """/metrics once the model is loaded (pagodad exports nothing before)."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"pagodad exited with {process.returncode}:\n"
                                 + log_path.read_text())
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = response.read().decode()
            if "pagoda_" in body:
                return body
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"no pagoda_ metric at {url} within {deadline_s} s:\n"
                         + log_path.read_text())


def parse_exposition(text):
    """({series name: [labels]}, {family: type}) of a Prometheus text exposition."""
    series, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
        elif line and not line.startswith("#"):
            match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
            labels = dict(MATCHER_RE_EXPOSITION.findall(match.group(3) or ""))
            series.setdefault(match.group(1), []).append(labels)
    return series, types


MATCHER_RE_EXPOSITION = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def stop(process, timeout_s):
    """SIGTERM, then the exit status; SIGKILL if it does not exit in time."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"pagodad did not exit within {timeout_s} s of SIGTERM")


def check_daemon(src, args):
    """The real pagodad exports every metric deploy/ uses, knows every flag it passes, drains."""
    pagodad = need_pagodad(args)
    failures = Failures()
    grpc_port, metrics_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log_path = pathlib.Path(tmp) / "pagodad.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(daemon_command(pagodad, grpc_port, metrics_port),
                                       stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        try:
            body = scrape_when_loaded(process, metrics_port, log_path)
            exit_code = stop(process, timeout_s=5 + SHUTDOWN_AFTER_DRAIN_S + 5)
            failures.check(exit_code == 0, f"pagodad exited {exit_code} after SIGTERM:\n"
                           + log_path.read_text())
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    series, types = parse_exposition(body)

    def series_type(name):
        if types.get(name) in ("counter", "gauge"):
            return types[name]
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
                return "histogram"
        return types.get(name)

    def label_values(name, label):
        values = {labels[label] for labels in series.get(name, []) if label in labels}
        return values or None

    for name, labels_list in series.items():
        if name.startswith("pagoda_"):
            failures.check(all("model_name" in labels for labels in labels_list),
                           f"{name} has a series without model_name")
    queries = all_queries(src, include_yaml=importable("yaml"))
    if not importable("yaml"):
        print("python3-yaml missing: checked the dashboard's queries only")
    for where, query in queries:
        check_query_against(failures, where, query, set(series), series_type, label_values)
    # The list the other checks use must not promise what the daemon does not export.
    for name in sorted(static_series()):
        failures.check(name in series, f"EXPORTED lists {name}, which pagodad does not export")
    for name, (kind, labels) in EXPORTED.items():
        failures.check(types.get(name) == kind,
                       f"{name} is a {types.get(name)}, EXPORTED says {kind}")
        for label, values in labels.items():
            seen = label_values(name if kind != "histogram" else name + "_bucket", label)
            failures.check(seen is not None, f"{name} has no label {label}")
            if values is not None and seen is not None:
                failures.check(values <= seen, f"{name}{{{label}}}: {sorted(values - seen)} "
                               f"never exported (seen {sorted(seen)})")
    extra = sorted({n for n in types if n.startswith("pagoda_")} - set(EXPORTED))
    if extra:
        print("exported but not in EXPORTED (add them and to docs/operations.md):", extra)
    failures.messages += check_flags(src, pagodad)
    print(f"scraped {len(series)} series names from pagodad; checked {len(queries)} queries")
    return failures


def pagodad_invocations(src):
    """(where, [flags]) of every pagodad command line in deploy/ and docs/operations.md."""
    yaml = need_yaml()
    for name in ("Dockerfile.cpu", "Dockerfile.cuda"):
        for kind, rest in dockerfile_instructions(src / "deploy/docker" / name):
            if kind == "ENTRYPOINT":
                yield name, json.loads(rest)[1:]
    for doc in load_yaml_docs(src / "deploy/k8s/deployment.yaml"):
        for container in doc["spec"]["template"]["spec"]["containers"]:
            yield f"deployment.yaml {container['name']}", container.get("args", [])
    systemd = src / "deploy/systemd"
    for path in (systemd / "pagodad.service", systemd / "pagodad.service.d/cuda.conf"):
        for key, value in systemd_unit(path)["Service"]:
            if key == "ExecStart" and value:
                yield path.name, value.split()[1:]
    env = (systemd / "pagodad.env").read_text()
    for match in re.finditer(r'^PAGODAD_ARGS="([^"]*)"', env, re.M):
        yield "pagodad.env", match.group(1).split()
    doc = (src / "docs/operations.md").read_text()
    yield "docs/operations.md flag table", [
        "--" + flag for flag in re.findall(r"^\| `--([a-z][a-z0-9-]+)", doc, re.M)]


def check_flags(src, pagodad):
    """Every flag deploy/ passes to pagodad, and docs/operations.md documents, is a real one."""
    help_text = subprocess.run([pagodad, "--help"], capture_output=True, text=True,
                               timeout=30).stdout
    known = set(re.findall(r"^\s+--([a-z0-9-]+)", help_text, re.M))
    known |= {"no-" + flag for flag in known}
    failures = Failures()
    for where, flags in pagodad_invocations(src):
        for flag in flags:
            if not flag.startswith("--") or flag.startswith("$"):
                continue
            name = flag[2:].split("=", 1)[0]
            failures.check(name in known, f"{where} passes {flag}, which pagodad does not know")
    doc = (src / "docs/operations.md").read_text()
    undocumented = sorted(f for f in known if not f.startswith("no-") and f != "help"
                          and f"`--{f}" not in doc)
    if undocumented:  # a warning: a new server flag must not break the build of server/
        print("WARNING: docs/operations.md does not document", " ".join(
            "--" + f for f in undocumented))
    return failures.messages


def child_pids(pid):
    children = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def check_daemon_pid1(src, args):
    """pagodad as PID 1 of a PID namespace (a container's init) drains on SIGTERM and exits 0."""
    pagodad = need_pagodad(args)
    unshare = need_tool("unshare")
    probe = subprocess.run([unshare, "--pid", "--fork", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        raise Skip("cannot create a PID namespace here (needs root or user namespaces)")
    failures = Failures()
    metrics_port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log_path = pathlib.Path(tmp) / "pagodad.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [unshare, "--pid", "--fork", "--kill-child"]
                + daemon_command(pagodad, free_port(), metrics_port),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            scrape_when_loaded(process, metrics_port, log_path)
            init_pid = child_pids(process.pid)[0]
            os.kill(init_pid, signal.SIGTERM)  # from the parent namespace, as a runtime does
            exit_code = process.wait(timeout=5 + SHUTDOWN_AFTER_DRAIN_S + 5)
            failures.check(exit_code == 0, f"pagodad as PID 1 exited {exit_code} after SIGTERM:\n"
                           + log_path.read_text())
        except subprocess.TimeoutExpired:
            failures.check(False, "pagodad as PID 1 ignored SIGTERM:\n" + log_path.read_text())
        finally:
            if process.poll() is None:
                process.kill()  # --kill-child takes pagodad with it
                process.wait()
    return failures


def http_json(url, timeout_s=5):
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read().decode())


def wait_for(what, predicate, deadline_s, processes):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for name, process, log_path in processes:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n"
                                     + log_path.read_text())
        try:
            if predicate():
                return
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")


def check_prometheus_e2e(src, args):
    """A real Prometheus scraping the real pagodad: every dashboard query returns data, every
    autoscaler query evaluates, every alert rule evaluates without error, none fires."""
    pagodad = need_pagodad(args)
    prometheus = need_tool("prometheus")
    yaml = need_yaml()
    failures = Failures()
    grpc_port, metrics_port, web_port = free_port(), free_port(), free_port()
    api = f"http://127.0.0.1:{web_port}/api/v1"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        config = tmp / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(src / "deploy/prometheus/alerts.yml")],
            "scrape_configs": [{"job_name": "pagoda", "static_configs": [
                {"targets": [f"127.0.0.1:{metrics_port}"]}]}]}))
        processes = []
        try:
            for name, command in (
                    ("pagodad", daemon_command(pagodad, grpc_port, metrics_port)),
                    ("prometheus", [prometheus, f"--config.file={config}",
                                    f"--storage.tsdb.path={tmp / 'data'}",
                                    f"--web.listen-address=127.0.0.1:{web_port}",
                                    "--log.level=warn"])):
                log_path = tmp / f"{name}.log"
                with open(log_path, "w") as log:
                    processes.append((name, subprocess.Popen(
                        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        cwd=tmp), log_path))

            def query(expr):
                url = f"{api}/query?" + urllib.parse.urlencode({"query": expr})
                try:
                    return http_json(url)
                except urllib.error.HTTPError as error:  # 400/422: a bad query, with a reason
                    return json.loads(error.read().decode())

            # Rates need two samples in their window: wait for the fifth scrape.
            wait_for("five scrapes of pagodad",
                     lambda: query("count_over_time(pagoda_kv_cache_capacity_blocks[1m]) >= 5")[
                         "data"]["result"], 60, processes)
            dash = dashboard(src)
            for where, expr in dashboard_exprs(dash):
                answer = query(substitute_grafana_variables(expr).replace("[5m]", "[1m]"))
                if failures.check(answer.get("status") == "success",
                                  f"{where}: {answer.get('error')}"):
                    failures.check(answer["data"]["result"], f"{where}: no data from pagodad")
            for where, expr in keda_queries(src):
                answer = query(expr)
                failures.check(answer.get("status") == "success", f"{where}: {answer.get('error')}")

            def all_rules_evaluated():
                rules = [rule for group in http_json(f"{api}/rules")["data"]["groups"]
                         for rule in group["rules"]]
                return rules and all(rule.get("lastEvaluation", "").startswith("0001") is False
                                     and rule.get("health") != "unknown" for rule in rules)

            wait_for("the alert rules to be evaluated", all_rules_evaluated, 30, processes)
            for group in http_json(f"{api}/rules")["data"]["groups"]:
                for rule in group["rules"]:
                    failures.check(rule["health"] == "ok" and not rule.get("lastError"),
                                   f"alert {rule['name']}: {rule['health']} {rule.get('lastError')}")
                    failures.check(rule.get("state", "inactive") == "inactive",
                                   f"alert {rule['name']} is {rule.get('state')} on an idle, "
                                   f"healthy pagodad")
        finally:
            for _, process, _ in reversed(processes):
                if process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
    return failures


def run(command):
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    print(result.stdout + result.stderr, end="")
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}")


CHECKS = {
    "promtool_config": check_promtool_config,
    "promtool_rules": check_promtool_rules,
    "promtool_test": check_promtool_test,
    "dashboard": check_dashboard,
    "runbooks": check_runbooks,
    "k8s": check_k8s,
    "systemd": check_systemd,
    "docker": check_docker,
    "daemon": check_daemon,
    "daemon_pid1": check_daemon_pid1,
    "prometheus_e2e": check_prometheus_e2e,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=sorted(CHECKS))
    parser.add_argument("--source-dir", required=True, type=pathlib.Path)
    parser.add_argument("--pagodad", default="", help="the pagodad binary; empty: not built")
    args = parser.parse_args()
    try:
        failures = CHECKS[args.check](args.source_dir.resolve(), args)
    except Skip as reason:
        print(f"SKIPPED: {reason}")
        return SKIP
    except AssertionError as error:
        print(f"FAILED: {error}")
        return 1
    if failures and failures.messages:
        print("FAILED:\n  " + "\n  ".join(failures.messages))
        return 1
    print("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
