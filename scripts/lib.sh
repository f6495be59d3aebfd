# shellcheck shell=bash disable=SC2034
# Shared helpers for the scripts in this directory. Source it; do not run it.

PG_MAJOR=15
PG_BIN=${PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
PG_CONFIG=${PG_CONFIG:-$PG_BIN/pg_config}
PG_OS_USER=${PG_OS_USER:-postgres}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# progress line, error line, fatal error
say() { printf '==> %s\n' "$*"; }
warn() { printf '!!! %s\n' "$*" >&2; }
die() { warn "$*"; exit 1; }

# Run a command as root (directly when we are root, otherwise through sudo).
as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# Run a command as the PostgreSQL OS user (initdb and postgres refuse root).
# Runs from / so a working directory the postgres user cannot enter (e.g. under
# /root) does not break initdb/pg_ctl.
as_pg() {
    if [[ $(id -un) == "$PG_OS_USER" ]]; then
        (cd / && "$@")
    elif [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u "$PG_OS_USER" -- "$@")
    else
        (cd / && sudo -u "$PG_OS_USER" -- "$@")
    fi
}

# Like as_pg but keeps the caller's working directory (for client tools whose
# arguments may be relative paths).
as_pg_here() {
    if [[ $(id -un) == "$PG_OS_USER" ]]; then
        "$@"
    elif [[ $EUID -eq 0 ]]; then
        runuser -u "$PG_OS_USER" -- "$@"
    else
        sudo -u "$PG_OS_USER" -- "$@"
    fi
}

# release_build PSQL: the build of sync_engine a bench cluster loaded, e.g.
# "release 0.1.0" (sync_engine_build_info(), through the psql wrapper function PSQL, in a
# database with the extension). Dies unless it is a release build: a debug build (what
# `cargo pgrx test` installs) runs 3-4 times slower, so its figures mean nothing.
# Use as `build=$(release_build sql)` under `set -e`.
release_build() {
    local info
    info=$("$1" -c "SELECT (i ->> 'profile') || ' ' || (i ->> 'version') FROM sync_engine_build_info() i" 2>/dev/null) ||
        info="unknown (no sync_engine_build_info(): a build older than this script)"
    [[ $info == release\ * ]] ||
        die "the installed sync_engine is not a release build (build: $info); benchmarks refuse to run against it. Install the release build: bash scripts/install-ext.sh (or run without SKIP_INSTALL=1)"
    echo "$info"
}

# result NAME VALUE OP TARGET: prints one figure as the line every bench ends with,
#   RESULT name=<NAME> value=<VALUE> target=<OP><TARGET> met|not-met
# (bench/report.sh collects these lines into BENCHMARKS.md). OP is one of <= < >= >;
# VALUE and TARGET are numbers (a VALUE that is not a number, e.g. "inf", is not-met).
# Sets RESULT_MISSED=1 when the target is not met (benches exit 1 on it under STRICT=1).
RESULT_MISSED=0
result() {
    (($# == 4)) || die "result NAME VALUE OP TARGET: got $# arguments ($*)"
    local name=$1 value=$2 op=$3 target=$4 verdict
    [[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || die "result: bad figure name '$name'"
    case $op in '<=' | '<' | '>=' | '>') ;; *) die "result $name: bad operator '$op' (want <=, <, >= or >)" ;; esac
    [[ $target =~ ^-?[0-9]+(\.[0-9]+)?$ ]] || die "result $name: target '$target' is not a number"
    verdict=$(awk -v v="$value" -v op="$op" -v t="$target" 'BEGIN {
        if (v !~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/) { print "not-met"; exit }
        v += 0; t += 0
        ok = (op == "<=") ? (v <= t) : (op == "<") ? (v < t) : (op == ">=") ? (v >= t) : (v > t)
        print ok ? "met" : "not-met" }')
    [[ $verdict == met ]] || RESULT_MISSED=1
    echo "RESULT name=$name value=$value target=$op$target $verdict"
}

# git_commit: the checkout's short commit, with "-dirty" when tracked files differ from it
git_commit() {
    local c
    c=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null) || { echo unknown; return; }
    [[ -z $(git -C "$REPO_ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]] || c+=-dirty
    echo "$c"
}

# bench_header NAME BUILD [SIZES]: the lines every bench prints before its figures (and
# bench/report.sh copies into BENCHMARKS.md): the machine (CPUs, CPU model, RAM), the date
# (UTC), the commit and the build (what release_build returned), and the sizes it ran with.
bench_header() {
    local cpu ram
    cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
    ram=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null)
    echo "bench:   $1"
    echo "machine: $(nproc) CPUs, ${cpu:-unknown CPU}, ${ram:-unknown} RAM"
    echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit:  $(git_commit)"
    echo "build:   $2"
    [[ -z ${3:-} ]] || echo "sizes:   $3"
}

# create_extension_private PSQL DIR: CREATE EXTENSION sync_engine (through the psql
# wrapper function PSQL) with its functions pointed at a private copy of the installed
# library, DIR/sync_engine.so. `cargo pgrx test` or install-ext.sh rewrite
# $libdir/sync_engine.so in place, and a backend that has the file mapped then dies with
# SIGBUS in the middle of a bench; the copy is taken now and pointed at right after
# CREATE EXTENSION, in a session of its own, so no backend loads both files.
create_extension_private() {
    local psql=$1 dir=$2 lib_so private_so
    lib_so=$("$PG_CONFIG" --pkglibdir)/sync_engine.so
    private_so=$dir/sync_engine.so
    as_root install -m 0644 -o "$PG_OS_USER" -- "$lib_so" "$private_so"
    "$psql" <<SQL
CREATE EXTENSION sync_engine;
UPDATE pg_proc SET probin = '$private_so' WHERE probin = '\$libdir/sync_engine';
SQL
    [[ $("$psql" -c "SELECT count(*) FROM pg_proc WHERE probin = '$private_so'") -gt 0 ]] ||
        die "could not point sync_engine at $private_so"
}
