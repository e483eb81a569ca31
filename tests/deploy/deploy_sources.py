"""What the deploy checks read, and how a check reports (tests/deploy/deploy_test.py).

Skip (a tool a check needs is missing) and Failures (the failed expectations of one check); the
readers of deploy/: YAML, the Kubernetes objects, the Grafana dashboard and its queries, the alert
rules, the KEDA triggers, systemd units and Dockerfiles; and pagodad's defaults that deploy/ must
agree with.
"""

import json
import re
import shutil

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


def importable(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def load_yaml_docs(path):
    yaml = need_yaml()
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def k8s_manifests(src):
    """The manifest files of deploy/k8s's kustomization. A subfolder with its own
    kustomization.yaml (inference-pool/, tests/deploy/inference_pool_test.py) is a separate
    tree and not among them."""
    k8s = src / "deploy/k8s"
    separate = {p.parent for p in k8s.rglob("kustomization.yaml") if p.parent != k8s}
    return [path for path in sorted(k8s.rglob("*.yaml"))
            if path.name != "kustomization.yaml"
            and not any(tree in path.parents for tree in separate)]


def k8s_objects(src):
    """Every object of deploy/k8s's kustomization, by (kind, name)."""
    objects = {}
    for path in k8s_manifests(src):
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


def dockerfile_instructions(path):
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
            for line in (raw.strip() for raw in text.splitlines()) if line]
