#!/usr/bin/env bash
# A production-shaped Temporal on this host, without Docker: PostgreSQL (from
# Debian's packages), the schema created and updated by Temporal's own schema
# tool, SQL advanced visibility, 4 history shards, and the frontend, history,
# matching and worker services as separate processes. It loads the same
# dynamic config and registers the same namespace and search attributes as
# docker-compose.temporal.yml (deploy/temporal/).
#
#   scripts/cluster.sh run        start, print the address, stop on Ctrl-C (make cluster)
#   scripts/cluster.sh start      start in the background; `stop` stops it
#   scripts/cluster.sh stop | status | env
#   scripts/cluster.sh restart frontend|history|matching|worker|ui|postgres  (clean stop, start)
#   scripts/cluster.sh kill    frontend|history|matching|worker|ui|postgres  (crash, start)
#
#   CLUSTER_DIR      state: config, logs and PostgreSQL's data (default: .cluster in the
#                    repo; PostgreSQL's go to /var/tmp when its user cannot reach there)
#   CLUSTER_PORT     the frontend's gRPC port (default 7233); the other services
#                    use CLUSTER_PORT+1 (history), +2 (matching), +6 (worker),
#                    +10 (frontend HTTP) and those minus 300 (membership). At
#                    most 32000: Temporal's SQL schema stores membership ports
#                    in a smallint (32767 at most)
#   CLUSTER_PG_PORT  PostgreSQL's port on 127.0.0.1 (default 55432, not the usual 5432)
#   CLUSTER_UI_PORT  the UI's port (default CLUSTER_PORT+1000: 8233, as the compose file)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
version="${TEMPORAL_SERVER_VERSION:-v1.29.1}"
ui_version=v2.42.1 # the UI docker-compose.temporal.yml runs
cache="${DRYDOCK_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/drydock}"
bindir="$cache/temporal-server/$version"
log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }

dir="${CLUSTER_DIR:-$root/.cluster}"
# The ports a cluster was first started with stick to its state directory,
# so that later commands (stop, restart, env) need only CLUSTER_DIR.
if [ -s "$dir/cluster.env" ]; then
  # shellcheck source=/dev/null
  . "$dir/cluster.env"
  : "${CLUSTER_PORT:=$saved_port}" "${CLUSTER_PG_PORT:=$saved_pg_port}" "${CLUSTER_UI_PORT:=$saved_ui_port}"
fi
port="${CLUSTER_PORT:-7233}"
pgport="${CLUSTER_PG_PORT:-55432}"
for p in "$port" "$pgport" "${CLUSTER_UI_PORT:-1024}"; do
  case "$p" in '' | *[!0-9]*) die "CLUSTER_PORT, CLUSTER_PG_PORT and CLUSTER_UI_PORT are port numbers, not '$p'" ;; esac
  [ "$p" -ge 1024 ] && [ "$p" -le 65535 ] || die "CLUSTER_PORT, CLUSTER_PG_PORT and CLUSTER_UI_PORT: $p is not in 1024..65535"
done
[ "$port" -le 32000 ] ||
  die "CLUSTER_PORT=$port: use at most 32000 (Temporal keeps the membership ports, CLUSTER_PORT-300.., in a smallint column)"
uiport="${CLUSTER_UI_PORT:-$((port + 1000))}"
services=(history matching frontend worker ui) # start order: history owns the shards
declare -A offset=([frontend]=0 [history]=1 [matching]=2 [worker]=6)
dir="$(mkdir -p "$dir" && cd "$dir" && pwd)"

# build_server compiles the server and the SQL schema tool from the Go module
# proxy into a versioned cache directory, once (as scripts/temporal-cli.sh
# does for the CLI), and prints the module's directory (its schema files).
build_server() {
  mkdir -p "$bindir"
  exec 8>"$bindir/.lock"
  flock 8
  if [ ! -x "$bindir/temporal-server" ] || [ ! -x "$bindir/temporal-ui-server" ]; then
    log "building the Temporal server $version and its SQL tool from the Go module proxy into $bindir"
    log "(first time only: several minutes on 2 cores)"
    local tmp work start
    tmp=$(mktemp -d "$bindir/.build.XXXXXX")
    work=$(mktemp -d)
    start=$(date +%s)
    (cd "$work" && GOBIN="$tmp" GOFLAGS=-mod=mod go install \
      "go.temporal.io/server/cmd/server@$version" "go.temporal.io/server/cmd/tools/sql@$version" &&
      GOBIN="$tmp/ui" GOFLAGS=-mod=mod go install "github.com/temporalio/ui-server/v2/cmd/server@$ui_version") >&2
    mv "$tmp/ui/server" "$bindir/temporal-ui-server"
    mv "$tmp/sql" "$bindir/temporal-sql-tool"
    mv "$tmp/server" "$bindir/temporal-server"
    rm -rf "$tmp" "$work"
    log "built the Temporal server in $(($(date +%s) - start))s"
  fi
  flock -u 8
  local mod
  mod="$(go env GOMODCACHE)/go.temporal.io/server@$version"
  [ -d "$mod/schema" ] || (cd / && go mod download "go.temporal.io/server@$version") >&2
  echo "$mod"
}

# pg_bin prints the directory of PostgreSQL's server binaries, installing
# Debian's postgresql package when there is none.
pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  if [ -z "$bin" ]; then
    [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed: run 'sudo apt-get install postgresql' and try again"
    log "installing PostgreSQL from Debian's packages"
    apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  fi
  echo "$bin"
}

# as_pg runs a command as the owner of PostgreSQL's data: the postgres user
# when we are root (PostgreSQL refuses to run as root), else ourselves.
as_pg() {
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# pg_home prints the directory of PostgreSQL's data, socket and log:
# CLUSTER_DIR/pg, or, when we are root and the postgres user cannot reach
# CLUSTER_DIR (a clone under /root, a private temporary directory), one
# under /var/tmp named after CLUSTER_DIR. The choice is recorded, so that
# later commands find it.
pg_home() {
  if [ ! -s "$dir/pg.home" ]; then
    local home="$dir/pg"
    if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$dir" 2>/dev/null; then
      home="/var/tmp/drydock-cluster-pg-$(printf %s "$dir" | md5sum | cut -c1-16)"
    fi
    echo "$home" >"$dir/pg.home"
  fi
  cat "$dir/pg.home"
}

pg_start() {
  local bin home data
  bin=$(pg_bin)
  home=$(pg_home)
  data="$home/data"
  [ ! -s "$data/postmaster.pid" ] || ! as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1 || return 0
  if [ ! -s "$data/PG_VERSION" ]; then
    mkdir -p -m 711 "$home"
    mkdir -p -m 700 "$data" "$home/run"
    [ -s "$dir/secret/pgpass" ] || { mkdir -p -m 700 "$dir/secret"; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/secret/pgpass"; }
    if [ "$(id -u)" = 0 ]; then
      chown postgres: "$data" "$home/run"
      runuser -u postgres -- test -x "$data" ||
        die "the postgres user cannot reach $data (a parent is not searchable): set CLUSTER_DIR elsewhere, e.g. /var/tmp/drydock-cluster"
      install -o postgres -m 600 "$dir/secret/pgpass" "$home/run/pwfile"
    else
      install -m 600 "$dir/secret/pgpass" "$home/run/pwfile"
    fi
    as_pg "$bin/initdb" -D "$data" -U temporal --pwfile="$home/run/pwfile" -A scram-sha-256 -E UTF8 >"$dir/log/initdb.log" 2>&1 ||
      die "initdb failed; see $dir/log/initdb.log"
    rm -f "$home/run/pwfile"
  fi
  touch "$home/postgres.log" && { [ "$(id -u)" != 0 ] || chown postgres: "$home/postgres.log"; }
  as_pg "$bin/pg_ctl" -D "$data" -l "$home/postgres.log" -w -t 60 \
    -o "-p $pgport -c listen_addresses=127.0.0.1 -k $home/run -c max_connections=200" start >/dev/null ||
    die "PostgreSQL did not start; see $home/postgres.log"
}

pg_stop() {
  local mode="${1:-fast}" data
  data="$(pg_home)/data"
  [ -s "$data/postmaster.pid" ] || return 0
  as_pg "$(pg_bin)/pg_ctl" -D "$data" -m "$mode" -w stop >/dev/null 2>&1 || true
}

# write_config renders the server's configuration: one file, read by every
# service process (each starts only the service it is given).
write_config() {
  local pass store
  pass=$(cat "$dir/secret/pgpass")
  mkdir -p "$dir/config"
  store() {
    cat <<EOF
    $1:
      sql:
        pluginName: postgres12
        databaseName: $2
        connectAddr: "127.0.0.1:$pgport"
        connectProtocol: tcp
        user: temporal
        password: "$pass"
        maxConns: $3
        maxIdleConns: $3
        maxConnLifetime: 1h
EOF
  }
  {
    echo "log: {stdout: true, level: warn}"
    echo "persistence:"
    echo "  defaultStore: default"
    echo "  visibilityStore: visibility"
    echo "  numHistoryShards: 4"
    echo "  datastores:"
    store default temporal 20
    store visibility temporal_visibility 10
    echo "global:"
    echo "  membership: {maxJoinDuration: 30s, broadcastAddress: 127.0.0.1}"
    echo "services:"
    for s in frontend history matching worker; do
      local p=$((port + offset[$s]))
      echo "  $s:"
      echo "    rpc: {grpcPort: $p, membershipPort: $((p - 300)), bindOnLocalHost: true$([ "$s" = frontend ] && echo ", httpPort: $((port + 10))")}"
    done
    cat <<EOF
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active: {enabled: true, initialFailoverVersion: 1, rpcName: frontend, rpcAddress: "127.0.0.1:$port"}
dcRedirectionPolicy: {policy: noop}
publicClient: {hostPort: "127.0.0.1:$port"}
dynamicConfigClient:
  filepath: "$root/deploy/temporal/dynamicconfig.yaml"
  pollInterval: 10s
EOF
  } >"$dir/config/cluster.yaml.tmp"
  mkdir -p "$dir/ui"
  printf 'temporalGrpcAddress: "127.0.0.1:%s"\nhost: 127.0.0.1\nport: %s\nenableUi: true\ndefaultNamespace: default\n' \
    "$port" "$uiport" >"$dir/ui/cluster.yaml"
  chmod 600 "$dir/config/cluster.yaml.tmp"
  mv "$dir/config/cluster.yaml.tmp" "$dir/config/cluster.yaml"
}

running() { local pid; pid=$(cat "$dir/run/$1.sup" 2>/dev/null) && kill -0 "$pid" 2>/dev/null; }

# svc_start runs one service under a supervisor loop that starts it again
# when it exits (as an orchestrator would: a service that starts while
# PostgreSQL is down exits at once). run/NAME.pid is the server's pid,
# run/NAME.sup the loop's.
svc_start() {
  running "$1" && return 0
  rm -f "$dir/run/$1.stop"
  local cmd=("$bindir/temporal-server" --root "$dir" --config config --env cluster --allow-no-auth start --service "$1")
  [ "$1" != ui ] || cmd=("$bindir/temporal-ui-server" --root "$dir" --config ui --env cluster start)
  setsid bash -c '
    dir=$1 name=$2
    shift 2 # the rest is the command line
    echo $$ >"$dir/run/$name.sup"
    until [ -e "$dir/run/$name.stop" ]; do
      "$@" </dev/null &
      echo $! >"$dir/run/$name.pid"
      wait $! && rc=0 || rc=$?
      [ -e "$dir/run/$name.stop" ] || { echo "cluster: the $name service exited ($rc); starting it again"; sleep 1; }
    done' supervise "$dir" "$1" "${cmd[@]}" >>"$dir/log/$1.log" 2>&1 </dev/null &
  local i
  for i in $(seq 1 50); do [ -s "$dir/run/$1.pid" ] && break; sleep 0.1; done
}

# svc_signal signals the service's server process (not its supervisor) and
# waits until a new one runs in its place.
svc_signal() {
  local old new i
  old=$(cat "$dir/run/$1.pid" 2>/dev/null) || die "the $1 service is not running"
  kill -s "$2" "$old" 2>/dev/null || true
  for i in $(seq 1 400); do
    new=$(cat "$dir/run/$1.pid" 2>/dev/null || true)
    [ -n "$new" ] && [ "$new" != "$old" ] && return 0
    sleep 0.1
  done
  die "the $1 service did not start again; see $dir/log/$1.log"
}

svc_stop() {
  local pid sup i
  sup=$(cat "$dir/run/$1.sup" 2>/dev/null) || return 0
  touch "$dir/run/$1.stop"
  pid=$(cat "$dir/run/$1.pid" 2>/dev/null || true)
  [ -z "$pid" ] || kill -s TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 300); do kill -0 "$sup" 2>/dev/null || break; sleep 0.1; done
  kill -s KILL "$sup" ${pid:+"$pid"} 2>/dev/null || true
  rm -f "$dir/run/$1.pid" "$dir/run/$1.sup" "$dir/run/$1.stop"
}

# wait_ready waits until the frontend answers and the namespace is usable.
wait_ready() {
  local cli="$1" i
  for i in $(seq 1 120); do
    "$cli" operator cluster health --address "127.0.0.1:$port" >/dev/null 2>&1 && return 0
    sleep 1
  done
  die "the frontend did not answer on 127.0.0.1:$port; see $dir/log/"
}

# register runs deploy/temporal/namespace.sh, again while the namespace is
# new (the frontend learns of a new namespace within ~10 s).
register() {
  local i
  for i in $(seq 1 30); do
    TEMPORAL_CLI="$1" TEMPORAL_ADDRESS="127.0.0.1:$port" sh "$root/deploy/temporal/namespace.sh" >>"$dir/log/setup.log" 2>&1 && return 0
    sleep 2
  done
  die "registering the namespace and search attributes failed; see $dir/log/setup.log"
}

cmd_start() {
  local mod cli
  mod=$(build_server)
  # The server only warns about an unknown key or a wrong type, and then
  # ignores it: a typo in the shared file would go unnoticed (in compose too).
  local check
  check=$("$bindir/temporal-server" validate-dynamic-config "$root/deploy/temporal/dynamicconfig.yaml" 2>&1)
  ! grep -q "warning:" <<<"$check" || die "deploy/temporal/dynamicconfig.yaml is not what Temporal $version reads: $check"
  cli=$("$here/temporal-cli.sh")
  mkdir -p "$dir/log" "$dir/run"
  pg_start
  log "PostgreSQL on 127.0.0.1:$pgport (data and log: $(pg_home))"
  SQL_HOST=127.0.0.1 SQL_PORT="$pgport" SQL_USER=temporal SQL_PASSWORD="$(cat "$dir/secret/pgpass")" \
    TEMPORAL_SQL_TOOL="$bindir/temporal-sql-tool" SCHEMA_DIR="$mod/schema/postgresql/v12" \
    sh "$root/deploy/temporal/schema.sh" >>"$dir/log/schema.log" 2>&1 ||
    die "creating or updating the schema failed; see $dir/log/schema.log"
  write_config
  printf 'saved_port=%s\nsaved_pg_port=%s\nsaved_ui_port=%s\n' "$port" "$pgport" "$uiport" >"$dir/cluster.env"
  local s
  for s in "${services[@]}"; do svc_start "$s"; done
  wait_ready "$cli"
  register "$cli"
  log "Temporal $version: frontend, history, matching and worker services (4 history shards), logs in $dir/log"
  log "UI: http://127.0.0.1:$uiport"
  echo "TEMPORAL_ADDRESS=127.0.0.1:$port"
}

cmd_stop() {
  local s
  for s in ui frontend worker matching history; do svc_stop "$s"; done
  pg_stop fast
}

cmd_status() {
  local s rc=0
  for s in "${services[@]}"; do
    if running "$s"; then echo "$s: running (pid $(cat "$dir/run/$s.pid" 2>/dev/null))"; else echo "$s: stopped"; rc=1; fi
  done
  if [ -s "$(pg_home)/data/postmaster.pid" ] && as_pg "$(pg_bin)/pg_ctl" -D "$(pg_home)/data" status >/dev/null 2>&1; then
    echo "postgres: running (127.0.0.1:$pgport)"
  else echo "postgres: stopped"; rc=1; fi
  return $rc
}

# one_service checks a restart/kill target.
one_service() {
  case "${1:-}" in frontend | history | matching | worker | ui | postgres) ;; *)
    die "usage: $0 restart|kill frontend|history|matching|worker|ui|postgres" ;;
  esac
}

# restart stops a service cleanly (SIGTERM; PostgreSQL: a fast shutdown)
# and starts it again; kill crashes it (SIGKILL; PostgreSQL: an immediate
# shutdown, which recovers from its WAL on start) and starts it again.
cmd_restart() {
  one_service "${1:-}"
  if [ "$1" = postgres ]; then pg_stop fast; pg_start; else svc_signal "$1" TERM; fi
}

cmd_kill() {
  one_service "${1:-}"
  if [ "$1" = postgres ]; then pg_stop immediate; pg_start; else svc_signal "$1" KILL; fi
}

cmd_run() {
  local nap=
  trap 'log "stopping"; [ -z "$nap" ] || kill "$nap" 2>/dev/null; cmd_stop; exit 0' INT TERM
  cmd_start
  log "running; Ctrl-C stops PostgreSQL and every service"
  while :; do
    sleep 3600 >/dev/null 2>&1 &
    nap=$!
    wait "$nap" || true
  done
}

case "${1:-}" in
  run) cmd_run ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  restart) cmd_restart "${2:-}" ;;
  kill) cmd_kill "${2:-}" ;;
  env) echo "TEMPORAL_ADDRESS=127.0.0.1:$port" ;;
  *) die "usage: $0 run|start|stop|status|env|restart SERVICE|kill SERVICE (see the comment at the top)" ;;
esac
