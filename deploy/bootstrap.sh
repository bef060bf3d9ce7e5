#!/usr/bin/env bash
# Installs what a fresh Debian machine needs to build, run and test ferry. Idempotent: a second
# run changes nothing. Reaches only Debian's package archive and the npm registry.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the message bus, the tools the lab and the agent drive, a C compiler for the
# test workloads, and the real programs the tests migrate.
apt_packages=(
  nats-server      # control plane and JetStream KV
  iproute2         # ip netns / link / addr / route: lab hosts and workload networks
  nftables         # network lock during the freeze
  util-linux       # nsenter, unshare, setsid
  procps           # ps, pkill -P for diagnostics
  gcc make libc6-dev libgomp1  # test workloads (C, OpenMP)
  python3          # python test workload and http.server
  sqlite3          # sqlite test workload
  redis-server     # networked test workload
  psmisc           # fuser, for diagnostics
  libxxhash0       # XXH3 page hashes for the dirty-tracking fallback (loaded through koffi)
  iputils-ping     # reachability checks inside the lab
  chromium         # headless browser for the dashboard test (driven by puppeteer-core)
)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing Debian packages (${missing[*]}); run as root" >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's redis-server package starts a system instance; ferry's tests start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
  systemctl disable --now redis-server >/dev/null 2>&1 || true
fi

# npm dependencies at the locked versions. (`npm ci` is not used: npm 11 here rejects its own
# lock files for lacking other platforms' optional rollup binaries; `npm install` honours the
# lock and installs the same tree.)
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ] || [ package.json -nt node_modules/.package-lock.json ]; then
  echo "bootstrap: installing npm dependencies"
  npm install --no-audit --no-fund --loglevel=error
fi

# The `ferry` command as JavaScript (dist/), so it starts without compiling TypeScript; bin/ferry.js
# falls back to the sources through tsx whenever they are newer than this build.
npm run --silent build

echo "bootstrap: ready (node $(node --version), nats-server $(nats-server --version 2>/dev/null | awk '{print $NF}'))"
