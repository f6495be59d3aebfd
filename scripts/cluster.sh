#!/usr/bin/env bash
# Throwaway PostgreSQL 15 clusters for the demo and the benchmarks.
#
#   cluster.sh start DIR PORT [-c name=value ...]  fresh initdb into DIR, start on 127.0.0.1:PORT
#   cluster.sh stop  DIR                           stop it (DIR and its log are kept)
#   cluster.sh psql  DIR PORT [psql args...]       psql as the postgres user
#   cluster.sh exec  DIR PORT cmd [args...]        any client (pgbench, ...) as the postgres
#                                                  user, with PGHOST/PGPORT/PGUSER/PGDATABASE set
#
# DIR is the data directory and the unix socket directory. It is wiped by `start`, so it
# must be empty, missing, or a previous cluster; it must be reachable by the postgres OS
# user (so not under /root), e.g. /var/tmp/sync_engine_demo. Auth is trust; the server
# listens on 127.0.0.1 only. Server log: DIR/postgres.log.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

abs_dir() {
    local d=$1
    [[ -n $d ]] || usage
    [[ $d == /* ]] || d="$PWD/$d"
    d=$(realpath -m -- "$d")
    case "$d" in
        / | /root | /root/* | /home | /usr | /usr/* | /etc | /etc/* | /var | /tmp | /var/tmp)
            die "refusing to use $d as a cluster directory (pick e.g. /var/tmp/sync_engine_demo)" ;;
    esac
    printf '%s\n' "$d"
}

check_port() {
    if ! [[ $1 =~ ^[0-9]+$ ]] || (($1 < 1 || $1 > 65535)); then die "bad port '$1'"; fi
}

is_running() { as_pg "$PG_BIN/pg_ctl" -D "$1" status >/dev/null 2>&1; }

cmd_stop() {
    local dir
    dir=$(abs_dir "${1:-}")
    if is_running "$dir"; then
        as_pg "$PG_BIN/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null
        say "cluster $dir stopped"
    else
        say "cluster $dir is not running"
    fi
}

cmd_start() {
    (($# >= 2)) || usage
    local dir port
    dir=$(abs_dir "$1")
    port=$2
    shift 2
    check_port "$port"

    # extra settings: -c name=value | -cname=value | --name=value
    local settings=()
    while (($#)); do
        case "$1" in
            -c) (($# >= 2)) || die "-c needs name=value"; settings+=("$2"); shift 2 ;;
            -c*) settings+=("${1#-c}"); shift ;;
            --*=*) settings+=("${1#--}"); shift ;;
            *) die "unsupported server option '$1' (use -c name=value)" ;;
        esac
    done
    for s in "${settings[@]}"; do
        [[ $s == *=* && ${s%%=*} =~ ^[A-Za-z_][A-Za-z0-9_.]*$ ]] || die "bad setting '$s' (want name=value)"
    done

    id "$PG_OS_USER" >/dev/null 2>&1 || die "OS user $PG_OS_USER missing: run scripts/setup.sh"
    [[ -x $PG_BIN/initdb ]] || die "$PG_BIN/initdb missing: run scripts/setup.sh"

    if is_running "$dir"; then
        say "stopping the previous cluster in $dir"
        as_pg "$PG_BIN/pg_ctl" -D "$dir" -m immediate -w stop >/dev/null
    fi
    if [[ -e $dir ]]; then
        [[ -d $dir ]] || die "$dir exists and is not a directory"
        if [[ -n $(as_root ls -A -- "$dir") ]] && ! as_root test -f "$dir/PG_VERSION"; then
            die "$dir is not empty and is not a PostgreSQL cluster; refusing to wipe it"
        fi
        as_root rm -rf -- "$dir"
    fi
    if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 2; then
        die "something already answers on 127.0.0.1:$port"
    fi

    as_root mkdir -p -- "$(dirname "$dir")"
    as_root install -d -m 0700 -o "$PG_OS_USER" -g "$(id -gn "$PG_OS_USER")" -- "$dir"
    as_pg test -w "$dir" || die "the $PG_OS_USER user cannot write $dir (is a parent directory private?)"

    local initdb_log
    initdb_log=$(mktemp)
    if ! as_pg "$PG_BIN/initdb" -D "$dir" -U postgres --auth=trust --encoding=UTF8 --locale=C \
        --no-sync --no-instructions >"$initdb_log" 2>&1; then
        cat "$initdb_log" >&2
        rm -f "$initdb_log"
        die "initdb failed"
    fi
    rm -f "$initdb_log"

    {
        echo
        echo "# --- added by scripts/cluster.sh ---"
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$dir'"
        echo "logging_collector = off"
        for s in "${settings[@]}"; do
            local v=${s#*=}
            printf "%s = '%s'\n" "${s%%=*}" "${v//\'/\'\'}"
        done
    } | as_pg tee -a "$dir/postgresql.conf" >/dev/null

    if ! as_pg "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/postgres.log" -w -t 60 start >/dev/null; then
        as_root tail -n 30 "$dir/postgres.log" >&2 || true
        die "postgres failed to start (log: $dir/postgres.log)"
    fi
    say "cluster $dir up on 127.0.0.1:$port${settings[*]:+ (${settings[*]})}"
}

cmd_exec() {
    (($# >= 3)) || usage
    local dir port
    dir=$(abs_dir "$1")
    port=$2
    shift 2
    check_port "$port"
    as_pg_here env PGHOST="$dir" PGPORT="$port" PGUSER=postgres PGDATABASE=postgres "$@"
}

cmd_psql() {
    (($# >= 2)) || usage
    local dir=$1 port=$2
    shift 2
    cmd_exec "$dir" "$port" "$PG_BIN/psql" "$@"
}

sub=${1:-}
shift || true
case "$sub" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    psql) cmd_psql "$@" ;;
    exec) cmd_exec "$@" ;;
    *) usage ;;
esac
