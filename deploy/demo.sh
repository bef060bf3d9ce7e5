#!/usr/bin/env bash
# The main job, end to end in a local lab: three hosts; redis-server (multi-threaded, loaded
# with data) as a container with its own address on h1; one client connection from the lab's
# client namespace issuing SET/GET every 5 ms; live migration to h2 and back while the client
# keeps going. After each move: where ferry says it runs, what the client saw (commands failed,
# longest pause, same connection), and the data (DBSIZE, DEBUG DIGEST). Then it all comes down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/bootstrap.sh >&2
ferry() { node bin/ferry.js "$@"; }
export FERRY_LAB="${FERRY_LAB:-demo}"
KEYS="${FERRY_DEMO_KEYS:-300000}"
MODE="${FERRY_DEMO_MODE:-}"   # empty: ferry's default; --stop-and-copy to compare
ferry lab down >/dev/null 2>&1 || true
work=$(mktemp -d /tmp/ferry-demo-XXXXXX)
pinger=
cleanup() { [ -n "$pinger" ] && kill "$pinger" 2>/dev/null; ferry lab down >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "a lab of three hosts"
ferry lab up --hosts 3
ferry hosts
client_ns=$(ferry lab status --json | node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0,"utf8")).clientNamespace)')
in_client() { ip netns exec "$client_ns" "$@"; }

step "redis-server on h1, with $KEYS keys"
addr=$(ferry run --host h1 --name redis --json -- /usr/bin/redis-server --port 6379 --save '' --appendonly no --protected-mode no --enable-debug-command yes |
  node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0,"utf8")).address)')
until [ "$(in_client redis-cli -h "$addr" ping 2>/dev/null)" = PONG ]; do sleep 0.1; done
in_client redis-cli -h "$addr" debug populate "$KEYS" key 1000 >/dev/null
digest=$(in_client redis-cli -h "$addr" debug digest)
ferry ps
echo "redis at $addr: $(in_client redis-cli -h "$addr" dbsize) keys, digest $digest, $(ls /proc/"$(ferry ps --json | node -e 'process.stdout.write(String(JSON.parse(require("fs").readFileSync(0,"utf8"))[0].rootPid))')"/task | wc -l) threads"

step "a client in the client namespace: one connection, SET+GET every 5 ms"
ip netns exec "$client_ns" node --import tsx test/integration/clients/redis-pinger.ts "$addr" 6379 5 "$work/client.json" >"$work/client.final" &
pinger=$!
sleep 1
client() { node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); console.log(`client: ${s.ok} replies, ${s.failed + s.wrong} failed, connection ${s.closed ? "DROPPED" : "the same one"}, longest pause ${Math.round(s.maxGapMs)} ms`)' "$1"; }
client "$work/client.json"

for to in h2 h1; do
  step "migrate redis to $to while the client keeps going"
  ferry migrate redis --to "$to" $MODE
  sleep 1
  ferry ps
  client "$work/client.json"
done

step "what the client saw, and the data"
kill -TERM "$pinger"; wait "$pinger" || true; pinger=
client "$work/client.final"
in_client redis-cli -h "$addr" -n 1 flushdb >/dev/null   # the client's own keys
echo "redis: $(in_client redis-cli -h "$addr" dbsize) keys, digest $(in_client redis-cli -h "$addr" debug digest) (before: $digest)"
ferry history

step "done"
ferry lab down
