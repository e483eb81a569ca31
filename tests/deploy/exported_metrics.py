"""The metrics pagodad exports (EXPORTED), and rough checks of PromQL queries against them.

The checks of deploy/ run these twice over: against EXPORTED in every build (static_checks.py),
and against a scrape of the real pagodad once it is built (pagodad_checks.py).
"""

import re

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
        "engine_failure", "unauthenticated", "cancelled"}}),
    "pagoda_engine_healthy": ("gauge", {}),
    "pagoda_new_token_ratio": ("gauge", {}),
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
