#!/usr/bin/env bash
# Installs the reference tokenizer packages (package-lock.json) into node_modules/ here.
exec "$(dirname "$0")/../../scripts/npm_ci_locked.sh" "$(dirname "$0")" tokenizers \
  "the tokenizer parity tests"
