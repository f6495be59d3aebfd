#!/usr/bin/env bash
# Prepare a Debian 12 machine to build and test sync_engine. Idempotent: a second run
# only checks and then runs an incremental `cargo build`.
#   SETUP_SKIP_BUILD=1   skip the final `cargo build`
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

PGRX_VERSION=0.18.1
APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 libclang-dev clang sudo redis-server postgresql-15-cron)

pgrx_have=$(cargo pgrx --version 2>/dev/null || true)
if [[ $pgrx_have != *" $PGRX_VERSION" ]]; then
    # building cargo-pgrx needs OpenSSL headers (ureq/native-tls)
    APT_PACKAGES+=(pkg-config libssl-dev)
fi
# a C toolchain to link Rust crates and build pgrx's C shims
command -v cc >/dev/null 2>&1 || APT_PACKAGES+=(build-essential)

# --- Debian packages -------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
    if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    if [[ " ${missing[*]} " == *" postgresql-15 "* ]]; then
        # we run throwaway clusters of our own; do not create/start the distro's main cluster
        as_root mkdir -p /etc/postgresql-common/createcluster.d
        echo 'create_main_cluster = false' | as_root tee /etc/postgresql-common/createcluster.d/50-sync-engine.conf >/dev/null
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    say "Debian packages present"
fi
[[ -x $PG_CONFIG ]] || die "$PG_CONFIG not found although postgresql-server-dev-15 is installed"
id "$PG_OS_USER" >/dev/null 2>&1 || die "OS user '$PG_OS_USER' does not exist (it comes with postgresql-15)"

# --- Rust toolchain and cargo-pgrx ---------------------------------------------------
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (rustup, toolchain >= 1.95) and rerun"
if [[ $pgrx_have == *" $PGRX_VERSION" ]]; then
    say "cargo-pgrx $PGRX_VERSION present"
else
    say "installing cargo-pgrx $PGRX_VERSION (have: ${pgrx_have:-none})"
    cargo install --locked cargo-pgrx --version "=$PGRX_VERSION"
fi

# --- pgrx configuration: point pg15 at the system PostgreSQL (never download one) -----
pgrx_config="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
if [[ -f $pgrx_config ]] && grep -Eq '^[[:space:]]*pg15[[:space:]]*=' "$pgrx_config"; then
    say "pgrx pg15 configured ($pgrx_config)"
else
    say "cargo pgrx init --pg15 $PG_CONFIG"
    cargo pgrx init --pg15 "$PG_CONFIG"
fi

# --- build ------------------------------------------------------------------------
if [[ ${SETUP_SKIP_BUILD:-0} == 1 ]]; then
    say "skipping cargo build (SETUP_SKIP_BUILD=1)"
else
    say "cargo build"
    cargo build
fi
say "setup done"
