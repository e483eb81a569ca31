#!/usr/bin/env bash
# Installs the pinned openai SDK (package-lock.json) into node_modules/ here. Idempotent and
# quick when node_modules already matches the lock file.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm > /dev/null; then
  echo "install.sh: npm not found; the openai SDK test will be skipped" >&2
  exit 0
fi
stamp=node_modules/.pagoda-lock-stamp
if [[ -f "$stamp" ]] && cmp -s package-lock.json "$stamp" && [[ -d node_modules/openai ]]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json "$stamp"
