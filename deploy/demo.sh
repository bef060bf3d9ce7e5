#!/usr/bin/env bash
# The main job, end to end in a local lab: bring the lab up, show the hosts and what their
# kernels offer, run a workload as a container on one host and list it, bring it all down.
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
ferry run --host h1 --name counter -- /bin/sh -c 'i=0; while :; do i=$((i+1)); sleep 0.1; done'
ferry ps
echo
ferry lab down
trap - EXIT
