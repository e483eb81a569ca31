#!/usr/bin/env python3
"""Checks of deploy/k8s/inference-pool/ (docs/fleet.md): pagodad behind an InferencePool and
llm-d-router's Endpoint Picker (EPP).

    inference_pool_test.py --source-dir DIR

1. Every object validates against its schema, vendored in tests/deploy/schemas/ (README.md
   there: Kubernetes v1.32.2, Gateway API v1.6.1, gateway-api-inference-extension v1.6.0),
   strictly: an unknown field fails, as `kubectl apply --validate=strict` would.
2. The EPP's EndpointPickerConfig (in the ConfigMap) uses plugin types, parameters and fields
   that llm-d-router v0.10.0 knows (schemas/llm-d-router/v0.10.0.json), and its references hold.
3. The pieces agree: the pool selects the pagodad pods on pagodad's --http-port; the
   endpointPickerRef is the EPP's ext-proc Service; the HTTPRoute's backend is the pool; the EPP
   dials the KV-event ports pagodad binds, with the topic kv@<pod ip>:<port>@<served model>;
   the token producer renders through a Service on pagodad's HTTP port with the served model
   name; the metric names the EPP reads are ones pagodad exports; only the EPP may subscribe.
4. Each check can fail: every mutation below breaks one thing in memory and the check named
   with it must reject it, and every check has such a mutation.

The checks live in inference_pool_checks.py; this file holds the mutations and runs it all.
Exit status: 0 passed, 1 failed, 77 skipped (python3-yaml or python3-jsonschema missing). Reads
files only.
"""

import argparse
import copy
import json
import pathlib
import sys

from inference_pool_checks import (CHECKS, Schemas, Skip, deployment_with, epp_config,
                                   find, kv_events_config, load_bundle, need_modules, objects,
                                   plugin_of_type, pod_labels, run_checks, set_epp_config)

SKIP = 77


# ---- mutations: (check that must reject it, what it breaks, how) -------------------------------

def pagodad_args(b):
    return deployment_with(b, "pagodad")[1]["args"]


def epp_args(b):
    return deployment_with(b, "epp")[1]["args"]


def replace_arg(args, name, value):
    """Sets --name=value (value None: removes it)."""
    args[:] = [a for a in args if not (a == f"--{name}" or a.startswith(f"--{name}="))]
    if value is not None:
        args.append(f"--{name}={value}")


def edit_kv(b, **fields):
    kv = kv_events_config(pagodad_args(b))
    for key, value in fields.items():
        if value is None:
            kv.pop(key, None)
        else:
            kv[key] = value
    replace_arg(pagodad_args(b), "kv-events-config", json.dumps(kv))


def edit_config(b, fn):
    config = epp_config(b)
    fn(config)
    set_epp_config(b, config)


def plugin(config, plugin_type):
    return plugin_of_type(config, plugin_type)


def params(config, plugin_type):
    return plugin(config, plugin_type).setdefault("parameters", {})


def rename_key(d, old, new):
    d[new] = d.pop(old)


def env_of(b, container):
    return deployment_with(b, container)[1].setdefault("env", [])


MUTATIONS = [
    ("kustomization", "a manifest left out of kustomization.yaml",
     lambda b: b["kustomization"]["resources"].remove("networkpolicy.yaml")),
    ("kustomization", "kustomization.yaml lists a file that is not there",
     lambda b: b["kustomization"]["resources"].append("pdb.yaml")),
    ("schemas", "a misspelt pod field (readinesProbe)",
     lambda b: rename_key(deployment_with(b, "pagodad")[1], "readinessProbe", "readinesProbe")),
    ("schemas", "an InferencePool target port as a string",
     lambda b: find(b, "InferencePool")["spec"]["targetPorts"][0].update(number="8000")),
    ("schemas", "an InferencePool failureMode outside its enum",
     lambda b: find(b, "InferencePool")["spec"]["endpointPickerRef"].update(
         failureMode="FailSoft")),
    ("schemas", "an unknown InferencePool spec field",
     lambda b: find(b, "InferencePool")["spec"].update(extensionRef={"name": "pagoda-epp"})),
    ("schemas", "an HTTPRoute path match type outside its enum",
     lambda b: find(b, "HTTPRoute")["spec"]["rules"][0]["matches"][0]["path"].update(
         type="Prefix")),
    ("schemas", "a Service port as a string",
     lambda b: find(b, "Service", "pagoda-epp")["spec"]["ports"][0].update(port="9002")),
    ("schemas", "an object of a kind with no vendored schema",
     lambda b: b["files"]["pagoda.yaml"].append({
         "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
         "metadata": {"name": "pagoda-pool"}, "spec": {"maxUnavailable": 1}})),
    ("pool-selects-pagodad", "the pool selects another component's pods",
     lambda b: find(b, "InferencePool")["spec"]["selector"]["matchLabels"].update(
         {"app.kubernetes.io/component": "server"})),
    ("pool-selects-pagodad", "the pool also selects the EPP",
     lambda b: pod_labels(deployment_with(b, "epp")[0]).update(
         find(b, "InferencePool")["spec"]["selector"]["matchLabels"])),
    ("target-port", "the pool's target port is not pagodad's HTTP port",
     lambda b: find(b, "InferencePool")["spec"]["targetPorts"][0].update(number=8001)),
    ("target-port", "pagodad serves HTTP elsewhere than its container port",
     lambda b: replace_arg(pagodad_args(b), "http-port", "8080")),
    ("endpoint-picker-ref", "endpointPickerRef names a Service that is not the EPP's",
     lambda b: find(b, "InferencePool")["spec"]["endpointPickerRef"].update(name="epp")),
    ("endpoint-picker-ref", "endpointPickerRef points at the EPP's metrics port",
     lambda b: find(b, "InferencePool")["spec"]["endpointPickerRef"]["port"].update(
         number=9090)),
    ("endpoint-picker-ref", "the EPP Service selects other pods",
     lambda b: find(b, "Service", "pagoda-epp")["spec"]["selector"].update(
         {"app.kubernetes.io/name": "pagoda"})),
    ("httproute", "the route's backend is a Service, not the pool",
     lambda b: find(b, "HTTPRoute")["spec"]["rules"][0]["backendRefs"][0].update(
         group="", kind="Service", name="pagoda-render", port=8000)),
    ("httproute", "the route's backend names another pool",
     lambda b: find(b, "HTTPRoute")["spec"]["rules"][0]["backendRefs"][0].update(
         name="pagoda-pool")),
    ("httproute", "the route matches only /v1/models",
     lambda b: find(b, "HTTPRoute")["spec"]["rules"][0]["matches"][0]["path"].update(
         value="/v1/models")),
    ("epp-deployment", "the EPP watches another pool",
     lambda b: replace_arg(epp_args(b), "pool-name", "pagoda-pool")),
    ("epp-deployment", "the EPP's --config-file is not in its ConfigMap",
     lambda b: replace_arg(epp_args(b), "config-file", "/config/epp.yaml")),
    ("epp-deployment", "the EPP's Role does not cover InferencePools",
     lambda b: find(b, "Role", "pagoda-epp")["rules"].pop(1)),
    ("epp-deployment", "the RoleBinding binds another ServiceAccount",
     lambda b: find(b, "RoleBinding", "pagoda-epp")["subjects"][0].update(name="default")),
    ("epp-config-structure", "a misspelt plugin type",
     lambda b: edit_config(b, lambda c: plugin(c, "queue-scorer").update(type="queue-scorers"))),
    ("epp-config-structure", "a misspelt parameter (blokSizeTokens)",
     lambda b: edit_config(b, lambda c: rename_key(
         params(c, "precise-prefix-cache-producer")["tokenProcessorConfig"],
         "blockSizeTokens", "blokSizeTokens"))),
    ("epp-config-structure", "a misspelt nested parameter (socketport)",
     lambda b: edit_config(b, lambda c: rename_key(
         params(c, "precise-prefix-cache-producer")["kvEventsConfig"]["podDiscoveryConfig"],
         "socketPort", "socketport"))),
    ("epp-config-structure", "a profile references an undefined plugin",
     lambda b: edit_config(b, lambda c: c["schedulingProfiles"][0]["plugins"].append(
         {"pluginRef": "load-aware-scorer", "weight": 1}))),
    ("epp-config-structure", "two plugins with one name",
     lambda b: edit_config(b, lambda c: c["plugins"].append({"type": "queue-scorer"}))),
    ("epp-config-structure", "a misspelt top-level field (dataLayers)",
     lambda b: edit_config(b, lambda c: rename_key(c, "dataLayer", "dataLayers"))),
    ("epp-config-structure", "a dataLayer extractor that is not a plugin",
     lambda b: edit_config(b, lambda c: c["dataLayer"]["sources"][0]["extractors"].append(
         {"pluginRef": "models-data-extractor"}))),
    ("kv-events-config", "pagodad connects its PUB socket instead of binding it",
     lambda b: edit_kv(b, endpoint="tcp://pagoda-epp:5557")),
    ("kv-events-config", "events disabled",
     lambda b: edit_kv(b, enable_kv_cache_events=False)),
    ("kv-events-config", "the topic names another model",
     lambda b: edit_kv(b, topic="kv@$(POD_IP):8000@Llama-3.1-8B-Instruct")),
    ("kv-events-config", "the topic names another port",
     lambda b: edit_kv(b, topic="kv@$(POD_IP):50051@meta-llama/Llama-3.1-8B-Instruct")),
    ("kv-events-config", "the topic has no pod address",
     lambda b: edit_kv(b, topic="kv@meta-llama/Llama-3.1-8B-Instruct")),
    ("kv-events-config", "POD_IP is not set from the downward API",
     lambda b: env_of(b, "pagodad").clear()),
    ("kv-events-config", "a misspelt vLLM field (buffer_step)",
     lambda b: edit_kv(b, buffer_step=1000)),
    ("kv-events-config", "the replay port is not a container port",
     lambda b: edit_kv(b, replay_endpoint="tcp://*:5559")),
    ("precise-prefix-cache", "the EPP dials another port than pagodad binds",
     lambda b: edit_config(b, lambda c: params(c, "precise-prefix-cache-producer")[
         "kvEventsConfig"]["podDiscoveryConfig"].update(socketPort=5556))),
    ("precise-prefix-cache", "the EPP never asks for a replay",
     lambda b: edit_config(b, lambda c: params(c, "precise-prefix-cache-producer")[
         "kvEventsConfig"]["podDiscoveryConfig"].pop("replaySocketPort"))),
    ("precise-prefix-cache", "centralized mode (the EPP binds, nobody connects)",
     lambda b: edit_config(b, lambda c: params(c, "precise-prefix-cache-producer")[
         "kvEventsConfig"].update(zmqEndpoint="tcp://*:5557", discoverPods=False))),
    ("precise-prefix-cache", "EPP blocks of 64 tokens over pagodad's 16",
     lambda b: edit_config(b, lambda c: params(c, "precise-prefix-cache-producer")[
         "tokenProcessorConfig"].update(blockSizeTokens=64))),
    ("precise-prefix-cache", "the scorer falls back to the approximate producer",
     lambda b: edit_config(b, lambda c: params(c, "prefix-cache-scorer").pop(
         "prefixMatchInfoProducerName"))),
    ("precise-prefix-cache", "no pod notifications reach the producer",
     lambda b: edit_config(b, lambda c: c["dataLayer"]["sources"].pop(1))),
    ("precise-prefix-cache", "a topic filter pagodad's topic does not start with",
     lambda b: edit_config(b, lambda c: params(c, "precise-prefix-cache-producer")[
         "kvEventsConfig"].update(topicFilter="kv@pagoda-pool"))),
    ("precise-prefix-cache", "pagodad without its prefix cache",
     lambda b: pagodad_args(b).append("--no-enable-prefix-caching")),
    ("token-producer", "the token producer renders another model",
     lambda b: edit_config(b, lambda c: params(c, "token-producer").update(
         modelName="Llama-3.1-8B-Instruct"))),
    ("token-producer", "the token producer calls the EPP's Service",
     lambda b: edit_config(b, lambda c: params(c, "token-producer")["vllm"].update(
         url="http://pagoda-epp.pagoda.svc.cluster.local:9002"))),
    ("token-producer", "the token producer calls another namespace",
     lambda b: edit_config(b, lambda c: params(c, "token-producer")["vllm"].update(
         url="http://pagoda-render.default.svc.cluster.local:8000"))),
    ("token-producer", "the estimate backend (no vllm url)",
     lambda b: edit_config(b, lambda c: params(c, "token-producer").pop("vllm"))),
    ("token-producer", "pagodad asks for a bearer token",
     lambda b: pagodad_args(b).append("--api-key-file=/secrets/api-keys")),
    ("metrics", "vLLM metric names expected, --metrics-compat missing",
     lambda b: replace_arg(pagodad_args(b), "metrics-compat", None)),
    ("metrics", "pods labelled pagoda with no pagoda engineConfigs entry",
     lambda b: (pod_labels(deployment_with(b, "pagodad")[0]).update(
         {"llm-d.ai/engine-type": "pagoda"}),
                edit_config(b, lambda c: params(c, "core-metrics-extractor").pop(
                    "engineConfigs")))),
    ("metrics", "the pagoda mapping names a metric pagodad does not export",
     lambda b: edit_config(b, lambda c: params(c, "core-metrics-extractor")["engineConfigs"][
         0].update(kvUsageSpec="pagoda_kv_cache_usage_perc"))),
    ("metrics", "the pagoda mapping reads vLLM's num_gpu_blocks label",
     lambda b: edit_config(b, lambda c: params(c, "core-metrics-extractor")["engineConfigs"][
         0].pop("cacheNumBlocksLabelName"))),
    ("metrics", "the EPP scrapes the metrics port, closed to it",
     lambda b: edit_config(b, lambda c: params(c, "metrics-data-source").update(port=9400))),
    ("network-policy", "the KV events open to every pod",
     lambda b: find(b, "NetworkPolicy", "pagoda-pool")["spec"]["ingress"][1].pop("from")),
    ("network-policy", "the policy selects other pods",
     lambda b: find(b, "NetworkPolicy", "pagoda-pool")["spec"]["podSelector"][
         "matchLabels"].update({"app.kubernetes.io/component": "server"})),
    ("pagodad-pod", "readiness on /metrics",
     lambda b: deployment_with(b, "pagodad")[1]["readinessProbe"]["httpGet"].update(
         path="/metrics")),
    ("pagodad-pod", "a grace period shorter than the drain",
     lambda b: deployment_with(b, "pagodad")[0]["spec"]["template"]["spec"].update(
         terminationGracePeriodSeconds=60)),
    ("pagodad-pod", "pagodad listening on loopback only",
     lambda b: replace_arg(pagodad_args(b), "host", "127.0.0.1")),
]

# Changes that must still pass every check: the documented alternatives.
VARIANTS = [
    ("pods read through pagodad's own metric names (engine type pagoda, no --metrics-compat)",
     lambda b: (pod_labels(deployment_with(b, "pagodad")[0]).update(
         {"llm-d.ai/engine-type": "pagoda"}),
                replace_arg(pagodad_args(b), "metrics-compat", None))),
    ("FailClose instead of FailOpen",
     lambda b: find(b, "InferencePool")["spec"]["endpointPickerRef"].update(
         failureMode="FailClose")),
    ("the token producer's short Service name",
     lambda b: edit_config(b, lambda c: params(c, "token-producer")["vllm"].update(
         url="http://pagoda-render:8000"))),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-dir", required=True, type=pathlib.Path)
    args = parser.parse_args()
    src = args.source_dir.resolve()
    try:
        need_modules()
    except Skip as reason:
        print(f"SKIPPED: {reason}")
        return SKIP
    schemas = Schemas(src)
    bundle = load_bundle(src)
    passed = failed = 0

    def report(ok, line, details=()):
        nonlocal passed, failed
        passed, failed = passed + ok, failed + (not ok)
        print(("ok    " if ok else "FAIL  ") + line)
        for detail in details:
            print("        " + detail)

    count = sum(1 for _ in objects(bundle))
    for name, errors in run_checks(bundle, schemas).items():
        report(not errors, f"{name}" + (f" ({count} objects)" if name == "schemas" else ""),
               errors)
    for description, mutate in VARIANTS:
        mutated = copy.deepcopy(bundle)
        mutate(mutated)
        errors = [f"{n}: {e}" for n, es in run_checks(mutated, schemas).items() for e in es]
        report(not errors, f"accepts: {description}", errors)
    rejected_by = {name: 0 for name in CHECKS}
    for check, description, mutate in MUTATIONS:
        mutated = copy.deepcopy(bundle)
        mutate(mutated)
        errors = run_checks(mutated, schemas)[check]
        rejected_by[check] += bool(errors)
        report(bool(errors), f"{check} rejects: {description}" +
               (f" [{errors[0]}]" if errors else " (not rejected)"))
    for name, count in rejected_by.items():
        report(count > 0, f"{name} can fail ({count} mutations rejected)")
    print(f"inference_pool_test: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
