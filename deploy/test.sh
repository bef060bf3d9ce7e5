#!/usr/bin/env bash
# The whole test suite: set-up (idempotent), typecheck, lint, unit and integration tests.
# Runs as root on a Debian machine: the integration tests build network namespaces and
# checkpoint real processes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/bootstrap.sh
echo "== typecheck"; npx tsc --noEmit -p .
echo "== lint"; npx eslint .
echo "== tests"; npx vitest run "$@"
