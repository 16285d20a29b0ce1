#!/usr/bin/env bash
# The project's one test command: system packages, services, formatting, lints, the whole test suite.
# Safe to run on a fresh machine (as root it installs what is missing) and on a developer's laptop.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the build and the tests need.
#   libssl-dev, pkg-config: the openssl crate; xmlsec1: the reference XMLDSig peer in the tests;
#   libengine-gost-openssl: GOST signatures through OpenSSL's engine;
#   libxml2-dev, libclang-dev: the `libxml` crate (XSD validation of mapping payloads) links libxml2 and
#   generates its bindings with bindgen (libclang); the dsig benchmark compares c14n with libxml2's;
#   chromium, chromium-driver: the status page is tested in a real headless browser;
#   openssl: the revocation tests issue CRLs with `openssl ca`.
PACKAGES=(pkg-config libssl-dev xmlsec1 libengine-gost-openssl libxml2-dev libclang-dev chromium chromium-driver openssl)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "test.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "test.sh: missing Debian packages: ${missing[*]}" >&2
    echo "test.sh: install them with: sudo apt-get install ${missing[*]}" >&2
    exit 2
  fi
fi

# PostgreSQL: tests that need it read SMEV_TEST_PG_URL.
export SMEV_TEST_PG_URL="${SMEV_TEST_PG_URL:-postgresql://postgres@127.0.0.1:5432/test}"
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if [[ $(id -u) -eq 0 ]] && command -v pg_ctlcluster >/dev/null; then
    echo "test.sh: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi

echo "test.sh: cargo fmt --check"
cargo fmt --all -- --check
echo "test.sh: cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "test.sh: cargo test"
cargo test --quiet
# The bench binaries are built (above) but not run here: benchmarks are not tests.
# The .deb: build, install, check, serve, purge (root only; skipped outside CI when not root).
echo "test.sh: packaging/test-deb.sh"
./packaging/test-deb.sh
