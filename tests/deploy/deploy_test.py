#!/usr/bin/env python3
"""Checks of deploy/ (Docker, Kubernetes, Prometheus, Grafana, systemd) and docs/operations.md.

    deploy_test.py CHECK --source-dir DIR [--pagodad PATH]

Each CHECK is one ctest (tests/deploy/CMakeLists.txt). Exit status: 0 passed, 1 failed, 77
skipped (a tool it needs is missing: promtool, prometheus, python3-yaml, or pagodad not built
yet). Only 127.0.0.1 is ever bound; every wait is bounded.

The metric checks run twice over: against EXPORTED (exported_metrics.py, the metrics the daemon
documents) in every build, and against a scrape of the real pagodad (check "daemon") once it is
built.

This file is the entry point and the table of checks. The checks live beside it: static_checks.py
(the files of deploy/ on their own), pagodad_checks.py (against the real pagodad); both read
deploy/ through deploy_sources.py. Python puts this script's directory on sys.path, so they import
without an install.
"""

import argparse
import pathlib
import sys

from deploy_sources import Skip
from pagodad_checks import check_daemon, check_daemon_pid1, check_prometheus_e2e
from static_checks import (check_dashboard, check_docker, check_k8s, check_promtool_config,
                           check_promtool_rules, check_promtool_test, check_runbooks,
                           check_systemd)

SKIP = 77

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
