#!/usr/bin/env bash
# Installs the Debian packages the test suite uses beyond the Rust toolchain,
# and schemathesis from PyPI into target/pyenv (a venv of the project's).
# Safe to re-run; does nothing when everything is present. Needs root (or sudo)
# only when a Debian package is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# The OpenAPI check (crates/server/tests/api/openapi.rs) runs target/pyenv/bin/st.
SCHEMATHESIS_VERSION=4.32.5
if [ "$(target/pyenv/bin/st --version 2>/dev/null)" != "st, version $SCHEMATHESIS_VERSION" ]; then
  echo "install-test-deps: installing schemathesis $SCHEMATHESIS_VERSION into target/pyenv"
  python3 -m venv target/pyenv
  target/pyenv/bin/pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

packages=()
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
# A real readiness target for the health-check tests (crates/server/tests/api/prometheus.rs).
command -v prometheus >/dev/null 2>&1 || packages+=(prometheus)
# The proxy the edge agent drives in the routing tests (crates/cli/tests/edge*).
command -v caddy >/dev/null 2>&1 || packages+=(caddy)
# The DNS server and tools that check and serve the rendered zone files.
command -v knotd >/dev/null 2>&1 || packages+=(knot)
command -v kdig >/dev/null 2>&1 || packages+=(knot-dnsutils)

if [ ${#packages[@]} -eq 0 ]; then
  echo "install-test-deps: all test packages present"
  exit 0
fi

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
echo "install-test-deps: installing ${packages[*]}"
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"
