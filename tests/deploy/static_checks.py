"""Checks of the files in deploy/ and docs/operations.md that run none of ours: promtool on the
Prometheus files, the Grafana dashboard, the runbooks, the Kubernetes manifests, the systemd unit
and the Dockerfiles (tests/deploy/deploy_test.py).
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

from deploy_sources import (DEFAULT_DRAIN_TIMEOUT_S, GRPC_PORT, METRICS_PORT,
                            SHUTDOWN_AFTER_DRAIN_S, Failures, alert_rules, all_queries, dashboard,
                            dashboard_exprs, dashboard_panels, dockerfile_instructions,
                            importable, k8s_manifests, k8s_objects, load_yaml_docs, need_tool,
                            need_yaml, systemd_unit)
from exported_metrics import (EXPORTED, QUANTILE_RE, check_query_against, static_label_values,
                              static_series, static_type, substitute_grafana_variables)


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


def check_k8s(src, _args):
    """The manifests parse and agree with each other and with pagodad."""
    yaml = need_yaml()
    failures = Failures()
    k8s = src / "deploy/k8s"
    listed = set(yaml.safe_load((k8s / "kustomization.yaml").read_text())["resources"])
    for path in k8s_manifests(src):
        rel = str(path.relative_to(k8s))
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


def run(command):
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    print(result.stdout + result.stderr, end="")
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}")
