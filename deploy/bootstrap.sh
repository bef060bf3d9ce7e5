#!/usr/bin/env bash
# Installs what a fresh Debian machine needs to build, run and test ferry. Idempotent: a second
# run changes nothing. Reaches only Debian's package archive and the npm registry.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: what a ferry host runs with (deploy/packages/runtime.txt, also the .deb's
# dependencies) and what building and testing a checkout needs besides (deploy/packages/test.txt:
# compilers, the real programs the tests migrate, a headless browser). A production host installs
# the .deb instead (docs/operators.md) and gets the runtime list only.
package_list() { sed -e 's/#.*//' "deploy/packages/$1.txt" | tr -s ' \t' '\n' | sed '/^$/d'; }
mapfile -t apt_packages < <(package_list runtime; package_list test)

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
