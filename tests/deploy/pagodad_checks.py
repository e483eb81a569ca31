"""Checks against the real pagodad: its /metrics against deploy/'s queries, its flags against
deploy/'s command lines, its SIGTERM drain (also as PID 1), and a real Prometheus scraping it
(tests/deploy/deploy_test.py). Each skips (Skip) until pagodad is built.
"""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from deploy_sources import (SHUTDOWN_AFTER_DRAIN_S, Failures, Skip, all_queries, dashboard,
                            dashboard_exprs, dockerfile_instructions, importable, keda_queries,
                            load_yaml_docs, need_tool, need_yaml, systemd_unit)
from exported_metrics import (EXPORTED, HISTOGRAM_SUFFIXES, check_query_against, static_series,
                              substitute_grafana_variables)


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
            f"--metrics-port={metrics_port}", "--http-port=0", "--model=dummy:tiny", "--threads=1",
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
    for rel in ("deployment.yaml", "inference-pool/pagoda.yaml"):
        for doc in load_yaml_docs(src / "deploy/k8s" / rel):
            if doc["kind"] != "Deployment":
                continue
            for container in doc["spec"]["template"]["spec"]["containers"]:
                yield f"{rel} {container['name']}", container.get("args", [])
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
