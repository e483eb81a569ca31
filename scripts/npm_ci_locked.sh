#!/usr/bin/env bash
# npm_ci_locked.sh DIR PACKAGE WHAT: installs the npm packages of DIR/package-lock.json into
# DIR/node_modules. Idempotent and quick when node_modules already matches the lock file (PACKAGE
# is one it must hold). Without npm it says that WHAT will be skipped and succeeds.
set -euo pipefail
dir=$1 package=$2 what=$3
cd "$dir"
if ! command -v npm > /dev/null; then
  echo "$(basename "$dir"): npm not found; $what will be skipped" >&2
  exit 0
fi
stamp=node_modules/.pagoda-lock-stamp
if [[ -f "$stamp" ]] && cmp -s package-lock.json "$stamp" && [[ -d "node_modules/$package" ]]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json "$stamp"
