#!/usr/bin/env bash
# `npm run package`: ferry as a Debian package, dist/ferry_<version>_<arch>.deb, for hosts that
# install it without a checkout (docs/operators.md). What it holds:
#   /usr/lib/ferry/            the build's JavaScript (npm run build: CLI, agent, coordinator),
#                              package.json, and node_modules: the production dependencies at the
#                              versions of package-lock.json (checked below), no dev tools, no tsx
#   /usr/bin/ferry, ferry-agent, ferry-coordinator   wrappers running it with /usr/bin/node
#   /lib/systemd/system/       deploy/systemd's units (enabled by the operator, per role)
#   /etc/ferry/                example configs (conffiles: an upgrade keeps the operator's edits)
#   /usr/share/doc/ferry/      the guides, nats-server cluster configs, an example workload
# Depends: deploy/packages/runtime.txt (nats-server only recommended) and nodejs (>= 20).
# Reaches the npm registry only for packages missing from npm's cache.
set -euo pipefail
cd "$(dirname "$0")/../.."

version=$(node -p 'require("./package.json").version')
arch=$(dpkg --print-architecture)
out="dist/ferry_${version}_${arch}.deb"
stage=$(mktemp -d /tmp/ferry-deb-XXXXXX)
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
lib="$root/usr/lib/ferry"
doc="$root/usr/share/doc/ferry"

# The build, unless dist/ is current (bootstrap builds it).
node bin/build-current.js || npm run --silent build
mkdir -p "$lib" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/ferry" "$doc/examples/nats" "$root/DEBIAN"
for d in agent cli coordinator deploy shared; do cp -a "dist/$d" "$lib/"; done
# The dashboard's page: its HTML and CSS as they are, its script bundled now (the package has
# neither its TypeScript nor esbuild).
mkdir -p "$lib/coordinator/dashboard/page"
cp coordinator/dashboard/page/index.html coordinator/dashboard/page/app.css "$lib/coordinator/dashboard/page/"
node --import tsx -e '
  const { bundlePage, PREBUILT_PAGE } = await import("./coordinator/dashboard/bundle.ts");
  (await import("node:fs")).writeFileSync(`${process.argv[1]}/coordinator/dashboard/${PREBUILT_PAGE}`, await bundlePage());
' "$lib"

# Production dependencies: package.json without the dev tools and tsx (the package runs
# JavaScript only), installed from the lock file, which pins every version.
node -e '
  const p = require("./package.json");
  const deps = { ...p.dependencies }; delete deps.tsx;
  const out = { name: p.name, version: p.version, description: p.description, private: true, type: p.type, license: p.license, engines: p.engines, dependencies: deps, overrides: p.overrides };
  require("fs").writeFileSync(process.argv[1], JSON.stringify(out, null, 2) + "\n");
' "$lib/package.json"
cp package-lock.json "$lib/"
# Kept between builds under dist/, by the lock file's and the runtime package.json's hash.
cache="dist/.package-modules/$(cat package-lock.json "$lib/package.json" | sha256sum | cut -c1-16)"
if [ -d "$cache/node_modules" ]; then
  cp -a "$cache/node_modules" "$cache/package-lock.json" "$lib/"
else
  (cd "$lib" && npm install --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error >/dev/null)
  rm -rf dist/.package-modules && mkdir -p "$cache" && cp -a "$lib/node_modules" "$lib/package-lock.json" "$cache/"
fi
# Every installed package at exactly the version the project's lock file names.
node -e '
  const want = require(process.argv[1]).packages, got = require(process.argv[2]).packages;
  const bad = Object.entries(got).filter(([k, v]) => k && (!want[k] || want[k].version !== v.version)).map(([k, v]) => `${k} ${v.version} (locked: ${want[k]?.version ?? "absent"})`);
  if (bad.length) { console.error("package: not at the locked versions:\n  " + bad.join("\n  ")); process.exit(1); }
' "$PWD/package-lock.json" "$lib/package-lock.json"
rm -f "$lib/node_modules/.package-lock.json"

for pair in ferry:cli ferry-agent:agent ferry-coordinator:coordinator; do
  printf '#!/bin/sh\nexec /usr/bin/node /usr/lib/ferry/%s/main.js "$@"\n' "${pair#*:}" >"$root/usr/bin/${pair%%:*}"
  chmod 0755 "$root/usr/bin/${pair%%:*}"
done
cp deploy/systemd/*.service "$root/lib/systemd/system/"
for c in agent coordinator cli; do cp "deploy/config/$c.example.json" "$root/etc/ferry/$c.json"; done
cp README.md docs/operators.md docs/security.md docs/network.md "$doc/"
cp deploy/nats/cluster-node*.conf "$doc/examples/nats/"
install -m 0755 deploy/package/counter.py "$doc/examples/counter.py"
printf 'ferry %s\nLicense: Apache-2.0 (see /usr/share/common-licenses/Apache-2.0)\nThe npm packages under /usr/lib/ferry/node_modules carry their own licenses.\n' "$version" >"$doc/copyright"

# Depends from the runtime list (nats-server: only the control-plane hosts need it).
runtime=$(sed -e 's/#.*//' deploy/packages/runtime.txt | tr -s ' \t' '\n' | sed '/^$/d' | grep -vx nats-server | paste -sd, | sed 's/,/, /g')
cat >"$root/DEBIAN/control" <<CONTROL
Package: ferry
Version: $version
Architecture: $arch
Maintainer: ferry maintainers <ferry@localhost>
Section: admin
Priority: optional
Installed-Size: $(du -sk "$root" | cut -f1)
Depends: nodejs (>= 20), $runtime, adduser
Recommends: nats-server
Description: live migration of running Linux processes and containers
 ferry moves running processes and containers between hosts: an agent per
 host checkpoints and restores them, coordinators drive each migration over
 NATS with JetStream. Needs Linux 6.x, cgroup v2 and Node.js 20 or later.
CONTROL
(cd "$root" && find etc -type f | sed 's|^|/|' | sort) >"$root/DEBIAN/conffiles"
install -m 0755 deploy/package/postinst "$root/DEBIAN/postinst"

mkdir -p dist
# zstd: Debian 12's dpkg reads it; xz would take the package from 4.7 to 3.1 MB for 40 s more.
dpkg-deb --root-owner-group -Zzstd --build "$root" "$out" >/dev/null
echo "package: $out ($(du -h "$out" | cut -f1), installed $(du -sh "$root" --exclude=DEBIAN | cut -f1))"
