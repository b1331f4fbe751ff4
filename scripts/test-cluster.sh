#!/usr/bin/env bash
# make test-cluster: starts a make-cluster Temporal (scripts/cluster.sh:
# PostgreSQL, 4 history shards, frontend/history/matching/worker as separate
# processes) in a scratch directory on free loopback ports, runs the
# end-to-end suite against it (every stack in a namespace of its own), then
# the chaos run with two workers, two webhook servers and two routers and the
# cluster's faults (chaos/cluster.go). Stops the cluster at the end; its logs
# are kept when something failed. CHAOS_FLAGS and E2E_FLAGS pass flags on.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$(dirname "$here")"
cli=$("$here/temporal-cli.sh")
chromium=$("$here/chromium.sh")

# free reports whether nothing listens on the loopback port.
free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 1 50); do
  # The frontend's port stays below 32768 (see CLUSTER_PORT in cluster.sh).
  port=$((20000 + RANDOM % 12000)) pg=$((40000 + RANDOM % 10000)) ui=$((50000 + RANDOM % 10000))
  ok=1
  for p in $port $((port + 1)) $((port + 2)) $((port + 6)) $((port + 10)) $((port - 300)) $((port - 299)) $((port - 298)) $((port - 294)) "$pg" "$ui"; do
    free "$p" || ok=0
  done
  [ "$ok" = 0 ] || break
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/drydock-cluster.XXXXXX")
chmod 711 "$dir" # PostgreSQL runs as the postgres user: it must reach its data directory
status=1
finish() {
  CLUSTER_DIR="$dir" "$here/cluster.sh" stop >/dev/null 2>&1 || true
  if [ "$status" = 0 ]; then rm -rf "$dir"; else echo "test-cluster: the cluster's logs are in $dir/log" >&2; fi
}
trap finish EXIT

began=$(date +%s)
CLUSTER_DIR="$dir" CLUSTER_PORT="$port" CLUSTER_PG_PORT="$pg" CLUSTER_UI_PORT="$ui" "$here/cluster.sh" start >/dev/null
echo "test-cluster: cluster up in $(($(date +%s) - began))s at 127.0.0.1:$port"
export DRYDOCK_CLUSTER_DIR="$dir" TEMPORAL_CLI="$cli" CHROMIUM="$chromium"

began=$(date +%s)
# shellcheck disable=SC2086 # E2E_FLAGS is a list of flags
go test -race -count=1 -timeout 30m ${E2E_FLAGS:-} ./e2e/...
echo "test-cluster: end-to-end suite passed on the cluster in $(($(date +%s) - began))s"

began=$(date +%s)
# shellcheck disable=SC2086
go run ./chaos -cluster ${CHAOS_FLAGS:-}
echo "test-cluster: chaos run passed on the cluster in $(($(date +%s) - began))s"
status=0
