#!/usr/bin/env python3
"""Writes deploy/k8s/prometheusrule.yaml: alerts.yml's groups wrapped in a PrometheusRule.

The Prometheus Operator loads rules from PrometheusRule objects, not from files; this keeps the
two copies identical (tests/deploy checks that they are). Run it after editing alerts.yml:
    deploy/prometheus/make_prometheusrule.py
"""
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
SOURCE = HERE / "alerts.yml"
TARGET = HERE.parent / "k8s" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/alerts.yml by deploy/prometheus/make_prometheusrule.py:
# edit alerts.yml and rerun the script. The same alert rules for the Prometheus Operator. Your
# Prometheus resource may select rules by label (e.g. release: kube-prometheus-stack): add it.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: pagoda
  labels:
    app.kubernetes.io/name: pagoda
spec:
"""


def render() -> str:
    lines = SOURCE.read_text().splitlines()
    # Drop the file's leading comment block; indent the rest under spec:.
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    body = "".join(("  " + line if line.strip() else "") + "\n" for line in lines)
    return HEADER + body


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--check":
        if TARGET.read_text() != render():
            print(f"{TARGET} is stale: run {pathlib.Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
