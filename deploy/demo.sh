#!/usr/bin/env bash
# The main job, end to end in a local lab: bring the lab up, show the hosts and what their
# kernels offer, bring it down again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/bootstrap.sh >&2
ferry() { node bin/ferry.js "$@"; }
export FERRY_LAB="${FERRY_LAB:-demo}"
ferry lab down >/dev/null 2>&1 || true
trap 'ferry lab down >/dev/null 2>&1 || true' EXIT
ferry lab up --hosts 3
echo
ferry hosts
echo
ferry lab down
trap - EXIT
