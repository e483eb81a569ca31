"""The checks of deploy/k8s/inference-pool/ (tests/deploy/inference_pool_test.py runs them):
reading the manifests, the vendored schemas (tests/deploy/schemas/), and one function per check
that returns what is wrong. The test mutates the manifests in memory and runs them again.
"""

import copy
import importlib
import json
import re
import urllib.parse

POOL_DIR = "deploy/k8s/inference-pool"
SCHEMA_DIR = "tests/deploy/schemas"
# (apiVersion, kind) -> schema: a standalone JSON schema, or ("crd", CustomResourceDefinition).
SCHEMAS = {
    ("v1", "Namespace"): "kubernetes/namespace-v1.json",
    ("v1", "Service"): "kubernetes/service-v1.json",
    ("v1", "ConfigMap"): "kubernetes/configmap-v1.json",
    ("v1", "ServiceAccount"): "kubernetes/serviceaccount-v1.json",
    ("apps/v1", "Deployment"): "kubernetes/deployment-apps-v1.json",
    ("rbac.authorization.k8s.io/v1", "Role"): "kubernetes/role-rbac-v1.json",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "kubernetes/rolebinding-rbac-v1.json",
    ("networking.k8s.io/v1", "NetworkPolicy"): "kubernetes/networkpolicy-networking-v1.json",
    ("inference.networking.k8s.io/v1", "InferencePool"):
        ("crd", "gateway-api-inference-extension/inference.networking.k8s.io_inferencepools.yaml"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"):
        ("crd", "gateway-api/gateway.networking.k8s.io_httproutes.v1.yaml"),
}
EPP_RECORD = "llm-d-router/v0.10.0.json"
POOL_GROUP = "inference.networking.k8s.io"
# pagodad's defaults (docs/operations.md) and its shutdown after the drain (deploy_sources.py).
DEFAULT_HTTP_PORT, DEFAULT_BLOCK_SIZE, DEFAULT_DRAIN_S, SHUTDOWN_AFTER_DRAIN_S = 8000, 16, 30, 10
EPP_DEFAULT_GRPC_PORT = 9002
# vLLM's KVEventsConfig fields (vllm/config/kv_events.py), which --kv-events-config takes.
KV_EVENTS_FIELDS = {"enable_kv_cache_events", "publisher", "endpoint", "replay_endpoint",
                    "buffer_steps", "hwm", "max_queue_size", "topic"}
TOKEN_FLAGS = ("--api-key", "--api-key-file", "--auth-token-file")


class Skip(Exception):
    pass


def need_modules():
    for module, package in (("yaml", "python3-yaml"), ("jsonschema", "python3-jsonschema")):
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise Skip(f"{package} is not installed") from error


# ---- reading --------------------------------------------------------------------------------

def load_bundle(src):
    """{"files": {name: [objects]}, "kustomization": {...}}: what the checks read and mutate."""
    import yaml
    files = {}
    for path in sorted((src / POOL_DIR).glob("*.yaml")):
        if path.name != "kustomization.yaml":
            files[path.name] = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    kustomization = yaml.safe_load((src / POOL_DIR / "kustomization.yaml").read_text())
    return {"files": files, "kustomization": kustomization}


def objects(bundle):
    for docs in bundle["files"].values():
        yield from docs


def find(bundle, kind, name=None):
    found = [o for o in objects(bundle) if o.get("kind") == kind
             and (name is None or o.get("metadata", {}).get("name") == name)]
    return found[0] if found else None


def deployment_with(bundle, container):
    """The Deployment that runs a container of that name (pagodad, epp)."""
    for obj in objects(bundle):
        if obj.get("kind") == "Deployment":
            for c in obj["spec"]["template"]["spec"].get("containers", []):
                if c.get("name") == container:
                    return obj, c
    raise AssertionError(f"no Deployment runs a container named {container}")


def pod_labels(deployment):
    return deployment["spec"]["template"]["metadata"].get("labels", {})


def selects(match_labels, labels):
    return bool(match_labels) and all(labels.get(k) == v for k, v in match_labels.items())


def flag(args, name, default=None):
    """The value of the last --name=VALUE or --name VALUE in args."""
    value = default
    for i, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{name}" and i + 1 < len(args) and not args[i + 1].startswith("--"):
            value = args[i + 1]
    return value


def has_flag(args, name):
    return any(a == f"--{name}" or a.startswith(f"--{name}=") for a in args)


def container_port(container, port):
    """A Service targetPort or probe port (a name or a number) resolved to a number."""
    for p in container.get("ports", []):
        if port in (p.get("name"), p.get("containerPort")):
            return p["containerPort"]
    return None


def epp_config(bundle):
    import yaml
    _, epp = deployment_with(bundle, "epp")
    path = flag(epp.get("args", []), "config-file", "")
    key = path.rsplit("/", 1)[-1]
    for cm in (o for o in objects(bundle) if o.get("kind") == "ConfigMap"):
        if key in cm.get("data", {}):
            return yaml.safe_load(cm["data"][key])
    raise AssertionError(f"no ConfigMap holds the EPP's --config-file {path!r}")


def set_epp_config(bundle, config):
    import yaml
    _, epp = deployment_with(bundle, "epp")
    key = flag(epp["args"], "config-file").rsplit("/", 1)[-1]
    for cm in (o for o in objects(bundle) if o.get("kind") == "ConfigMap"):
        if key in cm.get("data", {}):
            cm["data"][key] = yaml.safe_dump(config, sort_keys=False)


def plugins_by_name(config):
    return {p.get("name") or p.get("type"): p for p in config.get("plugins", [])}


def plugin_of_type(config, plugin_type):
    found = [p for p in config.get("plugins", []) if p.get("type") == plugin_type]
    return found[0] if found else None


def kv_events_config(args):
    raw = flag(args, "kv-events-config")
    return None if raw is None else json.loads(raw)


def tcp_port(endpoint):
    match = re.fullmatch(r"tcp://([^:]+|\[[^]]+\]):(\d+)", endpoint or "")
    return (match.group(1), int(match.group(2))) if match else (None, None)


# ---- schemas --------------------------------------------------------------------------------

class Schemas:
    def __init__(self, src):
        import jsonschema
        import yaml
        self.root = src / SCHEMA_DIR
        with open(self.root / "kubernetes/configmap-v1.json") as f:
            self.object_meta = json.load(f)["properties"]["metadata"]
        self.validators = {}
        for (api_version, kind), where in SCHEMAS.items():
            if isinstance(where, tuple):
                crd = yaml.safe_load((self.root / where[1]).read_text())
                schema = self.from_crd(crd, api_version, kind)
            else:
                schema = json.loads((self.root / where).read_text())
            self.validators[(api_version, kind)] = jsonschema.Draft7Validator(schema)
        with open(self.root / EPP_RECORD) as f:
            self.epp = json.load(f)

    def from_crd(self, crd, api_version, kind):
        group, version = api_version.split("/")
        assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind, api_version
        schema = next(v for v in crd["spec"]["versions"] if v["name"] == version)[
            "schema"]["openAPIV3Schema"]
        schema = strict(copy.deepcopy(schema))
        schema["properties"]["metadata"] = self.object_meta
        schema["properties"]["apiVersion"]["enum"] = [api_version]
        schema["properties"]["kind"]["enum"] = [kind]
        schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind"})
        return schema


def strict(node):
    """An apiserver-style structural schema made to reject unknown fields (JSON Schema allows them
    unless told otherwise; the apiserver prunes or, with strict validation, refuses them)."""
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: ({n: strict(c) for n, c in v.items()} if k == "properties" else strict(v))
           for k, v in node.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


# ---- the checks: each returns the list of what is wrong ---------------------------------------

def check_kustomization(bundle, _schemas):
    errors = []
    listed = bundle["kustomization"].get("resources", [])
    for name in bundle["files"]:
        if name not in listed:
            errors.append(f"{name} is not in kustomization.yaml's resources")
    for name in listed:
        if name not in bundle["files"]:
            errors.append(f"kustomization.yaml lists {name}, which is not in {POOL_DIR}")
    if not bundle["kustomization"].get("namespace"):
        errors.append("kustomization.yaml sets no namespace")
    return errors


def check_schemas(bundle, schemas):
    errors = []
    for name, docs in bundle["files"].items():
        for obj in docs:
            key = (obj.get("apiVersion"), obj.get("kind"))
            where = f"{name}: {key[1]} {obj.get('metadata', {}).get('name')}"
            validator = schemas.validators.get(key)
            if validator is None:
                errors.append(f"{where}: no schema for {key[0]} {key[1]} in {SCHEMA_DIR}")
                continue
            for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
                path = "/".join(str(p) for p in error.absolute_path) or "(root)"
                errors.append(f"{where}: {path}: {error.message[:200]}")
    return errors


def check_pool_selects_pagodad(bundle, _schemas):
    errors = []
    pool = find(bundle, "InferencePool")
    pagoda, _ = deployment_with(bundle, "pagodad")
    epp, _ = deployment_with(bundle, "epp")
    selector = pool["spec"]["selector"].get("matchLabels", {})
    if not selects(selector, pod_labels(pagoda)):
        errors.append(f"InferencePool selector {selector} does not select the pagodad pods "
                      f"({pod_labels(pagoda)})")
    if selects(selector, pod_labels(epp)):
        errors.append("InferencePool selector also selects the EPP's pods")
    for deployment in (pagoda, epp):
        if not selects(deployment["spec"]["selector"].get("matchLabels", {}),
                       pod_labels(deployment)):
            errors.append(f"Deployment {deployment['metadata']['name']} does not select its pods")
    return errors


def check_target_port(bundle, _schemas):
    errors = []
    pool = find(bundle, "InferencePool")
    _, pagodad = deployment_with(bundle, "pagodad")
    http_port = int(flag(pagodad.get("args", []), "http-port", DEFAULT_HTTP_PORT))
    ports = [p["number"] for p in pool["spec"].get("targetPorts", [])]
    if ports != [http_port]:
        errors.append(f"InferencePool targetPorts {ports}: pagodad serves HTTP on {http_port}")
    if container_port(pagodad, "http") != http_port:
        errors.append(f"pagodad's container port 'http' is {container_port(pagodad, 'http')}, "
                      f"--http-port is {http_port}")
    return errors


def check_endpoint_picker_ref(bundle, _schemas):
    errors = []
    ref = find(bundle, "InferencePool")["spec"].get("endpointPickerRef", {})
    epp, epp_container = deployment_with(bundle, "epp")
    if ref.get("kind", "Service") != "Service" or ref.get("group", "") != "":
        return [f"endpointPickerRef {ref} is not a core Service"]
    service = find(bundle, "Service", ref.get("name"))
    if service is None:
        return [f"endpointPickerRef names Service {ref.get('name')!r}, which is not here"]
    if not selects(service["spec"].get("selector", {}), pod_labels(epp)):
        errors.append(f"Service {ref['name']} does not select the EPP's pods")
    number = ref.get("port", {}).get("number")
    port = next((p for p in service["spec"]["ports"] if p["port"] == number), None)
    grpc_port = int(flag(epp_container.get("args", []), "grpc-port", EPP_DEFAULT_GRPC_PORT))
    if port is None:
        errors.append(f"endpointPickerRef port {number} is not a port of Service {ref['name']}")
    elif container_port(epp_container, port.get("targetPort", port["port"])) != grpc_port:
        errors.append(f"Service {ref['name']} port {number} does not reach the EPP's ext-proc "
                      f"port --grpc-port={grpc_port}")
    elif port.get("appProtocol") != "kubernetes.io/h2c":
        errors.append(f"Service {ref['name']} port {number}: appProtocol must be "
                      "kubernetes.io/h2c (ext-proc is gRPC)")
    if ref.get("failureMode") not in ("FailOpen", "FailClose"):
        errors.append("endpointPickerRef.failureMode: choose FailOpen or FailClose explicitly")
    return errors


def check_httproute(bundle, _schemas):
    errors = []
    pool = find(bundle, "InferencePool")
    route = find(bundle, "HTTPRoute")
    if route is None:
        return ["no HTTPRoute"]
    if not route["spec"].get("parentRefs"):
        errors.append("the HTTPRoute has no parentRefs (Gateway)")
    covered = set()
    for rule in route["spec"].get("rules", []):
        for backend in rule.get("backendRefs", []):
            if (backend.get("group"), backend.get("kind"), backend.get("name")) != (
                    POOL_GROUP, "InferencePool", pool["metadata"]["name"]):
                errors.append(f"HTTPRoute backendRef {backend} is not InferencePool "
                              f"{pool['metadata']['name']}")
                continue
            for match in rule.get("matches", [{"path": {"type": "PathPrefix", "value": "/"}}]):
                path = match.get("path", {})
                for route_path in ("/v1/completions", "/v1/chat/completions"):
                    if path.get("type") == "PathPrefix" and (
                            route_path + "/").startswith(path["value"].rstrip("/") + "/"):
                        covered.add(route_path)
    for route_path in ("/v1/completions", "/v1/chat/completions"):
        if route_path not in covered:
            errors.append(f"the HTTPRoute does not send {route_path} to the pool")
    return errors


def check_epp_deployment(bundle, _schemas):
    errors = []
    pool = find(bundle, "InferencePool")
    epp, container = deployment_with(bundle, "epp")
    args = container.get("args", [])
    namespace = bundle["kustomization"].get("namespace")
    if flag(args, "pool-name") != pool["metadata"]["name"]:
        errors.append(f"EPP --pool-name={flag(args, 'pool-name')}: the pool is "
                      f"{pool['metadata']['name']}")
    if flag(args, "pool-group", POOL_GROUP) != POOL_GROUP:
        errors.append(f"EPP --pool-group must be {POOL_GROUP}")
    pool_ns = flag(args, "pool-namespace", "$(NAMESPACE)")
    env = {e["name"]: e for e in container.get("env", [])}
    if pool_ns == "$(NAMESPACE)":
        if env.get("NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get(
                "fieldPath") != "metadata.namespace":
            errors.append("EPP: NAMESPACE is not the pod's namespace (downward API)")
    elif pool_ns != namespace:
        errors.append(f"EPP --pool-namespace={pool_ns}, the pool is in {namespace}")
    config_file = flag(args, "config-file", "")
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in epp["spec"]["template"]["spec"].get("volumes", [])}
    mounted = False
    for name, mount_path in mounts.items():
        cm_name = volumes.get(name, {}).get("configMap", {}).get("name")
        cm = find(bundle, "ConfigMap", cm_name) if cm_name else None
        if cm and config_file.startswith(mount_path.rstrip("/") + "/") and \
                config_file[len(mount_path.rstrip("/")) + 1:] in cm.get("data", {}):
            mounted = True
    if not mounted:
        errors.append(f"EPP --config-file={config_file} is not a key of a mounted ConfigMap")
    account = epp["spec"]["template"]["spec"].get("serviceAccountName")
    if find(bundle, "ServiceAccount", account) is None:
        errors.append(f"EPP serviceAccountName {account!r} is not a ServiceAccount here")
    granted = set()
    for binding in (o for o in objects(bundle) if o.get("kind") == "RoleBinding"):
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == account
                   for s in binding.get("subjects", [])):
            continue
        role = find(bundle, binding["roleRef"]["kind"], binding["roleRef"]["name"])
        for rule in (role or {}).get("rules", []):
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    if {"get", "list", "watch"} <= set(rule.get("verbs", [])):
                        granted.add((group, resource))
    for needed in (("", "pods"), (POOL_GROUP, "inferencepools")):
        if needed not in granted:
            errors.append(f"the EPP's ServiceAccount may not get/list/watch {needed[1]}")
    return errors


def check_epp_config_structure(bundle, schemas):
    """What llm-d-router v0.10.0's loader refuses (pkg/epp/config/loader/validation.go), and the
    unknown parameter fields its strict decoder refuses, against the recorded v0.10.0 facts."""
    errors = []
    record = schemas.epp
    config = epp_config(bundle)
    if (config.get("apiVersion"), config.get("kind")) != (record["configApiVersion"],
                                                          record["configKind"]):
        errors.append(f"EndpointPickerConfig apiVersion/kind {config.get('apiVersion')} "
                      f"{config.get('kind')}")
    errors += unknown_fields("EndpointPickerConfig", config, record["configFields"])
    names = []
    for plugin in config.get("plugins", []):
        errors += unknown_fields("plugin", plugin, record["pluginFields"])
        plugin_type = plugin.get("type")
        names.append(plugin.get("name") or plugin_type)
        if plugin_type not in record["pluginTypes"]:
            errors.append(f"plugin type {plugin_type!r} is not registered in llm-d-router v0.10.0")
        elif plugin_type not in record["parameters"]:
            errors.append(f"plugin type {plugin_type!r}: its parameters are not recorded in "
                          f"{EPP_RECORD}: record them")
        else:
            errors += parameter_errors(plugin_type, plugin.get("parameters") or {},
                                       record["parameters"][plugin_type])
    for name in {n for n in names if names.count(n) > 1}:
        errors.append(f"two plugins are named {name!r}")
    defined = set(names)
    for profile in config.get("schedulingProfiles", []):
        errors += unknown_fields("schedulingProfile", profile, record["profileFields"])
        refs = []
        for entry in profile.get("plugins", []):
            errors += unknown_fields("profile plugin", entry, record["profilePluginFields"])
            refs.append(entry.get("pluginRef"))
            if entry.get("pluginRef") not in defined:
                errors.append(f"profile {profile.get('name')} references undefined plugin "
                              f"{entry.get('pluginRef')!r}")
        types = [plugins_by_name(config).get(r, {}).get("type", "") for r in refs]
        if not any(t.endswith("-picker") for t in types):
            errors.append(f"profile {profile.get('name')} has no picker")
    if len(config.get("schedulingProfiles", [])) == 1 and not plugin_of_type(
            config, "single-profile-handler"):
        errors.append("one scheduling profile but no single-profile-handler")
    data_layer = config.get("dataLayer") or {}
    errors += unknown_fields("dataLayer", data_layer, record["dataLayerFields"])
    for source in data_layer.get("sources", []):
        errors += unknown_fields("dataLayer source", source, record["dataLayerSourceFields"])
        for ref in [source.get("pluginRef")] + [e.get("pluginRef")
                                                for e in source.get("extractors", [])]:
            if ref not in defined:
                errors.append(f"dataLayer references undefined plugin {ref!r}")
    return errors


def unknown_fields(where, obj, known):
    return [f"{where}: unknown field {k!r}" for k in obj if k not in known]


def parameter_errors(where, value, spec):
    if spec == "*" or spec is None:
        return []
    if isinstance(spec, list):
        if not isinstance(value, list):
            return [f"{where}: a list expected"]
        return [e for i, item in enumerate(value)
                for e in parameter_errors(f"{where}[{i}]", item, spec[0])]
    if not isinstance(value, dict):
        return [f"{where}: an object expected"]
    errors = []
    for key, child in value.items():
        if key not in spec:
            errors.append(f"{where}: unknown parameter {key!r} (known: {', '.join(spec)})")
        else:
            errors += parameter_errors(f"{where}.{key}", child, spec[key])
    return errors


def check_kv_events_config(bundle, _schemas):
    errors = []
    _, pagodad = deployment_with(bundle, "pagodad")
    args = pagodad.get("args", [])
    try:
        kv = kv_events_config(args)
    except json.JSONDecodeError as error:
        return [f"pagodad --kv-events-config is not JSON: {error}"]
    if kv is None:
        return ["pagodad has no --kv-events-config"]
    errors += [f"--kv-events-config: unknown field {k!r}" for k in kv if k not in KV_EVENTS_FIELDS]
    if kv.get("enable_kv_cache_events") is not True or kv.get("publisher", "zmq") != "zmq":
        errors.append("--kv-events-config must enable events with the zmq publisher")
    for field, port_name in (("endpoint", "kv-events"), ("replay_endpoint", "kv-replay")):
        host, port = tcp_port(kv.get(field))
        if host != "*":
            errors.append(f"--kv-events-config {field} {kv.get(field)!r}: bind (tcp://*:PORT), "
                          "so that the EPP dials each pod")
        elif container_port(pagodad, port_name) != port:
            errors.append(f"{field} port {port} is not pagodad's container port {port_name}")
    http_port = int(flag(args, "http-port", DEFAULT_HTTP_PORT))
    model = flag(args, "served-model-name")
    match = re.fullmatch(r"kv@\$\((\w+)\):(\d+)@(.+)", kv.get("topic", ""))
    if not match:
        return errors + [f"topic {kv.get('topic')!r} is not kv@$(POD_IP):PORT@MODEL"]
    env = {e["name"]: e for e in pagodad.get("env", [])}
    if env.get(match.group(1), {}).get("valueFrom", {}).get("fieldRef", {}).get(
            "fieldPath") != "status.podIP":
        errors.append(f"${match.group(1)} in the topic is not the pod IP (downward API)")
    if int(match.group(2)) != http_port:
        errors.append(f"topic port {match.group(2)} is not --http-port {http_port} (the pool's "
                      "target port, which the EPP keys pods by)")
    if match.group(3) != model:
        errors.append(f"topic model {match.group(3)!r} is not --served-model-name {model!r}: the "
                      "EPP keys blocks by the request's model")
    return errors


def check_precise_prefix_cache(bundle, _schemas):
    errors = []
    config = epp_config(bundle)
    _, pagodad = deployment_with(bundle, "pagodad")
    args = pagodad.get("args", [])
    by_name = plugins_by_name(config)
    scorer = plugin_of_type(config, "prefix-cache-scorer")
    producer_name = ((scorer or {}).get("parameters") or {}).get("prefixMatchInfoProducerName")
    producer = by_name.get(producer_name)
    if scorer is None or producer is None or producer.get("type") != \
            "precise-prefix-cache-producer":
        return ["prefix-cache-scorer does not read a precise-prefix-cache-producer "
                "(prefixMatchInfoProducerName): it would use the approximate producer"]
    scorer_name = scorer.get("name") or scorer["type"]
    if not any(e.get("pluginRef") == scorer_name for p in config.get("schedulingProfiles", [])
               for e in p.get("plugins", [])):
        errors.append("prefix-cache-scorer is in no scheduling profile")
    sources = {s["pluginRef"]: [e["pluginRef"] for e in s.get("extractors", [])]
               for s in (config.get("dataLayer") or {}).get("sources", [])}
    notifier = next((n for n, p in by_name.items()
                     if p.get("type") == "endpoint-notification-source"), None)
    if producer_name not in sources.get(notifier, []):
        errors.append("precise-prefix-cache-producer is not an extractor of an "
                      "endpoint-notification-source: it would subscribe to no pod")
    params = producer.get("parameters") or {}
    events = params.get("kvEventsConfig") or {}
    discovery = events.get("podDiscoveryConfig") or {}
    if events.get("zmqEndpoint") or events.get("discoverPods", True) is not True:
        errors.append("kvEventsConfig: pod discovery (discoverPods, no zmqEndpoint): pagodad "
                      "binds its PUB socket and the EPP dials each pod")
    kv = kv_events_config(args) or {}
    for field, key, default in (("endpoint", "socketPort", 5557),
                                ("replay_endpoint", "replaySocketPort", None)):
        _, port = tcp_port(kv.get(field))
        if discovery.get(key, default) != port:
            errors.append(f"podDiscoveryConfig.{key} {discovery.get(key, default)} is not the "
                          f"port of pagodad's {field} ({port})")
    topic_filter = events.get("topicFilter", "kv@")
    if not kv.get("topic", "").startswith(topic_filter):
        errors.append(f"topicFilter {topic_filter!r} does not match pagodad's topic")
    tokens = params.get("tokenProcessorConfig") or {}
    block = tokens.get("blockSizeTokens") or tokens.get("blockSize") or DEFAULT_BLOCK_SIZE
    if block != int(flag(args, "block-size", DEFAULT_BLOCK_SIZE)):
        errors.append(f"tokenProcessorConfig.blockSizeTokens {block} is not pagodad's "
                      f"--block-size: stored events would not make whole EPP blocks")
    if has_flag(args, "no-enable-prefix-caching"):
        errors.append("pagodad runs without its prefix cache: no KV events to route on")
    return errors


def check_token_producer(bundle, _schemas):
    errors = []
    config = epp_config(bundle)
    pagoda, pagodad = deployment_with(bundle, "pagodad")
    args = pagodad.get("args", [])
    producer = plugin_of_type(config, "token-producer")
    params = (producer or {}).get("parameters") or {}
    if not params.get("vllm", {}).get("url"):
        return ["no token-producer with the vllm backend: the estimate backend's ids are not "
                "the model's tokens"]
    if params.get("modelName") != flag(args, "served-model-name"):
        errors.append(f"token-producer modelName {params.get('modelName')!r} is not pagodad's "
                      f"--served-model-name {flag(args, 'served-model-name')!r}")
    url = urllib.parse.urlsplit(params["vllm"]["url"])
    namespace = bundle["kustomization"].get("namespace")
    host_parts = (url.hostname or "").split(".")
    if url.scheme != "http" or url.path not in ("", "/") or not url.port:
        errors.append(f"token-producer url {params['vllm']['url']}: http://SERVICE:PORT expected")
    elif host_parts[1:] not in ([], [namespace], [namespace, "svc"],
                                [namespace, "svc", "cluster", "local"]):
        errors.append(f"token-producer url host {url.hostname} is not a Service of namespace "
                      f"{namespace}")
    else:
        service = find(bundle, "Service", host_parts[0])
        if service is None:
            errors.append(f"token-producer url names Service {host_parts[0]!r}, not here")
        else:
            port = next((p for p in service["spec"]["ports"] if p["port"] == url.port), None)
            http_port = int(flag(args, "http-port", DEFAULT_HTTP_PORT))
            if not selects(service["spec"].get("selector", {}), pod_labels(pagoda)):
                errors.append(f"Service {host_parts[0]} does not select the pagodad pods")
            elif port is None or container_port(
                    pagodad, port.get("targetPort", port["port"])) != http_port:
                errors.append(f"Service {host_parts[0]} port {url.port} does not reach "
                              f"pagodad's --http-port {http_port}")
    for token_flag in TOKEN_FLAGS:
        if any(a == token_flag or a.startswith(token_flag + "=") for a in args):
            errors.append(f"pagodad {token_flag}: the EPP renders without a bearer token")
    return errors


def check_metrics(bundle, schemas):
    from exported_metrics import EXPORTED
    errors = []
    config = epp_config(bundle)
    pagoda, pagodad = deployment_with(bundle, "pagodad")
    args = pagodad.get("args", [])
    source = plugin_of_type(config, "metrics-data-source")
    extractor = plugin_of_type(config, "core-metrics-extractor")
    if source is None or extractor is None:
        return ["metrics-data-source and core-metrics-extractor must both be configured"]
    sources = {s["pluginRef"]: [e["pluginRef"] for e in s.get("extractors", [])]
               for s in (config.get("dataLayer") or {}).get("sources", [])}
    source_name = source.get("name") or source["type"]
    if (extractor.get("name") or extractor["type"]) not in sources.get(source_name, []):
        errors.append("core-metrics-extractor is not an extractor of metrics-data-source")
    source_params = source.get("parameters") or {}
    if source_params.get("path", "/metrics") != "/metrics":
        errors.append(f"metrics-data-source path {source_params['path']}: pagodad serves "
                      "/metrics")
    http_port = int(flag(args, "http-port", DEFAULT_HTTP_PORT))
    if source_params.get("port", http_port) != http_port:
        errors.append(f"metrics-data-source port {source_params['port']}: scrape the pool's "
                      f"target port {http_port} (networkpolicy.yaml opens it to the EPP)")
    params = extractor.get("parameters") or {}
    label_key = params.get("engineLabelKey") or schemas.epp["defaultEngineLabelKey"]
    engine = pod_labels(pagoda).get(label_key, params.get("defaultEngine")
                                    or schemas.epp["defaultEngine"])
    configured = {e["name"]: e for e in params.get("engineConfigs", [])}
    if engine == "vllm" and "vllm" not in configured:
        if flag(args, "metrics-compat") != "vllm":
            errors.append("the pods use the EPP's vLLM metric names (engine type vllm) but "
                          "pagodad runs without --metrics-compat=vllm")
    elif engine not in configured:
        errors.append(f"engine type {engine!r} of the pods has no engineConfigs entry")
    for name, entry in configured.items():
        if name == "vllm" or not name.startswith("pagoda"):
            continue
        for field in ("queuedRequestsSpec", "runningRequestsSpec", "kvUsageSpec",
                      "cacheInfoSpec"):
            metric = re.match(r"[^{]*", entry.get(field, "")).group(0)
            if EXPORTED.get(metric, ("",))[0] != "gauge":
                errors.append(f"engineConfigs {name}.{field}: {metric!r} is not a gauge pagodad "
                              "exports (tests/deploy/exported_metrics.py)")
        info_labels = EXPORTED.get(re.match(r"[^{]*", entry.get("cacheInfoSpec", "")).group(0),
                                   ("", {}))[1]
        for field in ("cacheBlockSizeLabelName", "cacheNumBlocksLabelName"):
            default = schemas.epp["defaultEngineConfigs"]["vllm"][field]
            if entry.get("cacheInfoSpec") and entry.get(field, default) not in info_labels:
                errors.append(f"engineConfigs {name}.{field}: {entry.get(field, default)!r} is "
                              f"not a label of {entry['cacheInfoSpec']}")
    return errors


def check_network_policy(bundle, _schemas):
    errors = []
    pagoda, pagodad = deployment_with(bundle, "pagodad")
    epp, _ = deployment_with(bundle, "epp")
    policies = [p for p in objects(bundle) if p.get("kind") == "NetworkPolicy"
                and selects(p["spec"]["podSelector"].get("matchLabels", {}), pod_labels(pagoda))]
    if not policies:
        return ["no NetworkPolicy selects the pagodad pods"]
    allowed = {}  # container port -> list of `from` (None: anyone)
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            for port in rule.get("ports", []) or [{"port": None}]:
                number = container_port(pagodad, port["port"]) if port["port"] else "all"
                allowed.setdefault(number, []).append(rule.get("from"))
    for name in ("kv-events", "kv-replay"):
        number = container_port(pagodad, name)
        froms = allowed.get(number, []) + allowed.get("all", [])
        if not froms:
            errors.append(f"the EPP cannot reach pagodad's {name} port {number}")
        for peers in froms:
            if not peers or any(
                    "podSelector" not in p or "namespaceSelector" in p or "ipBlock" in p
                    or not selects(p["podSelector"].get("matchLabels", {}), pod_labels(epp))
                    for p in peers):
                errors.append(f"pagodad's {name} port {number} (token ids of cached prompts) "
                              "is open to more than the EPP's pods")
    http_port = container_port(pagodad, "http")
    if not allowed.get(http_port) and not allowed.get("all"):
        errors.append(f"nobody may reach pagodad's HTTP port {http_port}")
    return errors


def check_pagodad_pod(bundle, _schemas):
    errors = []
    pagoda, pagodad = deployment_with(bundle, "pagodad")
    spec = pagoda["spec"]["template"]["spec"]
    args = pagodad.get("args", [])
    http_port = int(flag(args, "http-port", DEFAULT_HTTP_PORT))
    for kind in ("startup", "readiness", "liveness"):
        probe = (pagodad.get(kind + "Probe") or {}).get("httpGet", {})
        if probe.get("path") != "/health" or container_port(pagodad, probe.get("port")) != \
                http_port:
            errors.append(f"{kind} probe is not GET /health on the HTTP port {http_port}")
    if flag(args, "host") != "0.0.0.0":
        errors.append("pagodad must listen on every interface (--host=0.0.0.0)")
    pre_stop = pagodad.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_stop_s = float(pre_stop[-1]) if pre_stop and pre_stop[0].endswith("sleep") else 0
    drain = float(flag(args, "drain-timeout", DEFAULT_DRAIN_S))
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace <= pre_stop_s + drain + SHUTDOWN_AFTER_DRAIN_S:
        errors.append(f"terminationGracePeriodSeconds {grace} <= preStop {pre_stop_s} + "
                      f"--drain-timeout {drain} + {SHUTDOWN_AFTER_DRAIN_S}")
    if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
        errors.append("the pagodad pod must run as non-root")
    if not flag(args, "served-model-name"):
        errors.append("pagodad needs --served-model-name: the route, the EPP and the KV-event "
                      "topic all name the model")
    return errors


CHECKS = {
    "kustomization": check_kustomization,
    "schemas": check_schemas,
    "pool-selects-pagodad": check_pool_selects_pagodad,
    "target-port": check_target_port,
    "endpoint-picker-ref": check_endpoint_picker_ref,
    "httproute": check_httproute,
    "epp-deployment": check_epp_deployment,
    "epp-config-structure": check_epp_config_structure,
    "kv-events-config": check_kv_events_config,
    "precise-prefix-cache": check_precise_prefix_cache,
    "token-producer": check_token_producer,
    "metrics": check_metrics,
    "network-policy": check_network_policy,
    "pagodad-pod": check_pagodad_pod,
}


def run_checks(bundle, schemas):
    results = {}
    for name, check in CHECKS.items():
        try:
            results[name] = check(bundle, schemas)
        except (AssertionError, KeyError, TypeError, ValueError, AttributeError) as error:
            results[name] = [f"could not check: {type(error).__name__}: {error}"]
    return results
