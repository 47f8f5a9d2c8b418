#!/usr/bin/env bash
# Installs the Debian packages the test suite uses beyond the Rust toolchain,
# schemathesis and kubernetes-validate from PyPI into venvs of the project's
# (target/pyenv, target/kubevalidate) and cargo-deb from crates.io into target/tools.
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

# The Kubernetes manifests' check against the API schemas
# (crates/cli/tests/cli/kubernetes.rs) runs target/kubevalidate/bin/kubernetes-validate,
# a venv of its own (its jsonschema need not agree with schemathesis').
KUBERNETES_VALIDATE_VERSION=1.37.0
if [ "$(target/kubevalidate/bin/kubernetes-validate --version 2>/dev/null)" != "$KUBERNETES_VALIDATE_VERSION" ]; then
  echo "install-test-deps: installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into target/kubevalidate"
  python3 -m venv target/kubevalidate
  target/kubevalidate/bin/pip install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

# The package test (crates/cli/tests/cli/package.rs) and packaging/build-deb.sh
# build the .deb with cargo-deb, installed into the project's target/tools.
CARGO_DEB_VERSION=3.8.0
if [ "$(target/tools/bin/cargo-deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  echo "install-test-deps: installing cargo-deb $CARGO_DEB_VERSION into target/tools"
  cargo install --quiet --locked --root target/tools cargo-deb --version "$CARGO_DEB_VERSION"
fi

packages=()
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
# A real readiness target for the health-check tests (crates/server/tests/api/prometheus.rs).
command -v prometheus >/dev/null 2>&1 || packages+=(prometheus)
# The proxy the edge agent drives in the routing tests (crates/cli/tests/edge*).
command -v caddy >/dev/null 2>&1 || packages+=(caddy)
# The DNS server and tools that check and serve the rendered zone files
# (crates/testkit/src/knot.rs: knotd, `knotc zone-check` from knot, kdig from
# knot-dnsutils; kzonecheck, in knot-dnssecutils on bookworm, is not needed).
command -v knotd >/dev/null 2>&1 || packages+=(knot)
command -v kdig >/dev/null 2>&1 || packages+=(knot-dnsutils)
# The package test: systemd-analyze verifies the units, dpkg-shlibdeps (cargo-deb's
# $auto dependencies) and objcopy (splitting off debug info).
command -v systemd-analyze >/dev/null 2>&1 || packages+=(systemd)
command -v dpkg-shlibdeps >/dev/null 2>&1 || packages+=(dpkg-dev)
command -v objcopy >/dev/null 2>&1 || packages+=(binutils)

if [ ${#packages[@]} -eq 0 ]; then
  echo "install-test-deps: all test packages present"
  exit 0
fi

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
echo "install-test-deps: installing ${packages[*]}"
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"
