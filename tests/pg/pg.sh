#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/pg/pg.sh: throw-away PostgreSQL 15 servers for the tests and
# benchmarks (issue 17). Each server lives in a directory of its own, listens
# on 127.0.0.1:PORT and a socket in that directory, and runs as user
# `postgres` when we are root (initdb refuses root).
#
#   pg.sh install                       apt-get installs postgresql-15 if missing
#   pg.sh bindir                        prints the server binaries' directory
#   pg.sh start DIR PORT [sync]         initdb DIR (fresh) and start; with sync a
#                                       commit waits for a synchronous standby
#   pg.sh standby DIR PRIMARY_PORT PORT base backup of the primary, started as a
#                                       streaming hot standby (application_name
#                                       standby)
#   pg.sh promote DIR                   the standby becomes a primary
#   pg.sh stop DIR [immediate]          stops (fast, or immediate)
#   pg.sh restart DIR                   starts a stopped server again, data kept
#   pg.sh kill DIR                      kill -9 of the postmaster; returns once
#                                       it and its children are gone
#
# ASYNCQ_PG_FSYNC=off (the default: tests) or on (benchmarks).
set -euo pipefail

die() { echo "pg.sh: $*" >&2; exit 1; }

bindir() {
    local d
    for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
        if [[ -x $d/initdb && -x $d/pg_ctl ]]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

# Runs a server binary as the user that owns the data directories.
as_owner() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

own() {
    mkdir -p "$1"
    if [[ $(id -u) == 0 ]]; then
        chown postgres: "$1"
        chmod 700 "$1"
        # the user postgres must reach the directory through its parents
        local p
        p=$(dirname "$(realpath "$1")")
        while [[ $p != / ]]; do
            chmod o+x "$p" 2>/dev/null || true
            p=$(dirname "$p")
        done
    fi
}

install() {
    if bindir >/dev/null; then
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "postgresql-15 is not installed and we are not root: apt-get install postgresql-15"
    export DEBIAN_FRONTEND=noninteractive
    # no cluster of the package's own: ours are started by hand
    mkdir -p /etc/postgresql-common
    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf
    apt-get install -y -q postgresql-15 >/dev/null ||
        { apt-get update -q >/dev/null && apt-get install -y -q postgresql-15 >/dev/null; } ||
        die "apt-get install postgresql-15 failed"
    bindir >/dev/null || die "postgresql-15 installed but initdb not found"
}

conf() {
    local dir=$1 port=$2
    local fsync=${ASYNCQ_PG_FSYNC:-off}
    cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = $fsync
full_page_writes = $fsync
max_connections = 200
shared_buffers = 256MB
wal_level = replica
max_wal_senders = 8
wal_keep_size = 256MB
hot_standby = on
logging_collector = off
log_min_messages = warning
CONF
}

wait_ready() {
    local dir=$1 port=$2 _
    for _ in $(seq 1 300); do
        if as_owner "$BIN/pg_isready" -q -h "$dir" -p "$port" -t 1; then
            return 0
        fi
        sleep 0.1
    done
    die "server in $dir did not accept connections within 30 s (log: $dir/log)"
}

start() {
    local dir=$1 port=$2 mode=${3:-}
    rm -rf "$dir"
    own "$dir"
    as_owner "$BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 \
        --no-sync >"$dir/initdb.log" 2>&1 || die "initdb failed: $(tail -3 "$dir/initdb.log")"
    conf "$dir" "$port"
    echo "host replication all 127.0.0.1/32 trust" >> "$dir/data/pg_hba.conf"
    if [[ $mode == sync ]]; then
        echo "synchronous_standby_names = '*'" >> "$dir/data/postgresql.conf"
    fi
    as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 start >/dev/null ||
        die "start failed: $(tail -5 "$dir/log")"
    wait_ready "$dir" "$port"
}

standby() {
    local dir=$1 primary=$2 port=$3
    rm -rf "$dir"
    own "$dir"
    as_owner "$BIN/pg_basebackup" -h 127.0.0.1 -p "$primary" -U postgres \
        -D "$dir/data" -R -X stream --no-sync \
        -d "host=127.0.0.1 port=$primary user=postgres application_name=standby" \
        >"$dir/basebackup.log" 2>&1 || die "pg_basebackup failed: $(tail -3 "$dir/basebackup.log")"
    # the primary's settings came with the copy: this one's own port and socket
    cat >> "$dir/data/postgresql.conf" <<CONF
port = $port
unix_socket_directories = '$dir'
synchronous_standby_names = ''
CONF
    as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 start >/dev/null ||
        die "standby start failed: $(tail -5 "$dir/log")"
    wait_ready "$dir" "$port"
}

cmd=${1:-}
shift || true
if [[ $cmd == install ]]; then
    install
    exit 0
fi
BIN=$(bindir) || die "PostgreSQL server binaries not found: run 'tests/pg/pg.sh install' as root"
case $cmd in
bindir) echo "$BIN" ;;
start) [[ $# -ge 2 ]] || die "usage: pg.sh start DIR PORT [sync]"; start "$@" ;;
standby) [[ $# -eq 3 ]] || die "usage: pg.sh standby DIR PRIMARY_PORT PORT"; standby "$@" ;;
promote)
    [[ $# -eq 1 ]] || die "usage: pg.sh promote DIR"
    as_owner "$BIN/pg_ctl" -D "$1/data" -w -t 30 promote >/dev/null
    ;;
stop)
    [[ $# -ge 1 ]] || die "usage: pg.sh stop DIR [immediate]"
    [[ -f $1/data/postmaster.pid ]] || exit 0
    as_owner "$BIN/pg_ctl" -D "$1/data" -m "${2:-fast}" -w -t 30 stop >/dev/null || true
    ;;
restart)
    [[ $# -eq 1 ]] || die "usage: pg.sh restart DIR"
    [[ -f $1/data/postgresql.conf ]] || die "no server in $1"
    as_owner "$BIN/pg_ctl" -D "$1/data" -l "$1/log" -w -t 30 start >/dev/null ||
        die "restart failed: $(tail -5 "$1/log")"
    wait_ready "$1" "$(sed -n 's/^port = //p' "$1/data/postgresql.conf" | tail -1)"
    ;;
kill)
    [[ $# -eq 1 ]] || die "usage: pg.sh kill DIR"
    [[ -f $1/data/postmaster.pid ]] || exit 0
    pm=$(head -1 "$1/data/postmaster.pid")
    children=$(pgrep -P "$pm" || true)
    kill -9 "$pm" 2>/dev/null || true
    # gone, children too (they leave at the postmaster's death): the data
    # directory may be started again at once (pg.sh restart)
    for _ in $(seq 1 300); do
        alive=0
        for p in $pm $children; do
            kill -0 "$p" 2>/dev/null && alive=1
        done
        [[ $alive == 0 ]] && exit 0
        sleep 0.05
    done
    die "the server of $1 did not exit within 15 s of kill -9"
    ;;
*) die "usage: pg.sh install|bindir|start|standby|promote|stop|restart|kill ..." ;;
esac
