#!/usr/bin/env bash
# Installs the pinned openai SDK (package-lock.json) into node_modules/ here.
exec "$(dirname "$0")/../../scripts/npm_ci_locked.sh" "$(dirname "$0")" openai "the openai SDK test"
