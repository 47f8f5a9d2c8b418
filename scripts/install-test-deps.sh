#!/usr/bin/env bash
# Installs the Debian packages the test suite uses beyond the Rust toolchain.
# Safe to re-run; does nothing when everything is present. Needs root (or sudo)
# only when something is missing.
set -euo pipefail

packages=()
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
# A real readiness target for the health-check tests (crates/server/tests/api/prometheus.rs).
command -v prometheus >/dev/null 2>&1 || packages+=(prometheus)

if [ ${#packages[@]} -eq 0 ]; then
  echo "install-test-deps: all test packages present"
  exit 0
fi

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
echo "install-test-deps: installing ${packages[*]}"
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"
