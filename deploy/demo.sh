#!/usr/bin/env bash
# The main job, end to end in a local lab: bring up three hosts, run a multi-threaded workload
# as a container on h1, migrate it to h2 and back while it runs, and show after each move that
# it carries on where it was with its own consistency checks passing. Then bring it all down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/bootstrap.sh >&2
ferry() { node bin/ferry.js "$@"; }
export FERRY_LAB="${FERRY_LAB:-demo}"
ferry lab down >/dev/null 2>&1 || true
work=$(mktemp -d /tmp/ferry-demo-XXXXXX)
trap 'ferry lab down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "a lab of three hosts"
ferry lab up --hosts 3
ferry hosts

# python-threads: 3 threads extend SHA-256 hash chains and log every link; the main thread
# re-verifies the whole log and each thread checks its own id and chain head (test/workloads).
step "a multi-threaded workload on h1"
ferry run --host h1 --name chains --cwd "$work" -- /usr/bin/python3 "$PWD/test/workloads/src/python-threads.py" "$work/status.json"
sleep 1
show() { node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); console.log(`workload: progress ${s.progress} links, own checks ${s.ok ? "passing" : "FAILED: " + s.error}`)' "$work/status.json"; }
ferry ps
show

step "migrate it to h2 while it runs"
ferry migrate chains --to h2
sleep 1
ferry ps
show

step "and back to h1"
ferry migrate chains --to h1
sleep 1
ferry ps
show
ferry history

step "done"
ferry lab down
trap 'rm -rf "$work"' EXIT
