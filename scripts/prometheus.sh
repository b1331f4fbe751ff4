#!/usr/bin/env bash
# Prints the paths of the Prometheus server and of promtool, one per line
# (prometheus first), installing Debian's `prometheus` package with apt-get
# the first time (as root, or through sudo), the way chromium.sh provides
# Chromium. deploy/prometheus/rules_test.go checks the alert rules with
# promtool and deploy/grafana's test runs the server. $PROMETHEUS and
# $PROMTOOL, when both are set to executables, win.
set -euo pipefail

if [ -n "${PROMETHEUS:-}" ] && [ -x "${PROMETHEUS}" ] && [ -n "${PROMTOOL:-}" ] && [ -x "${PROMTOOL}" ]; then
  printf '%s\n%s\n' "$PROMETHEUS" "$PROMTOOL"
  exit 0
fi
find_both() {
  local server tool
  server="$(command -v prometheus)" && tool="$(command -v promtool)" && printf '%s\n%s\n' "$server" "$tool"
}
if find_both; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
exec 9>"${TMPDIR:-/tmp}/drydock-prometheus.lock"
flock 9 # one install at a time, however many clones ask
if ! find_both >/dev/null; then
  echo "Installing prometheus with apt-get (first time only)" >&2
  $sudo apt-get update -qq >&2
  # --no-install-recommends: the server and promtool, without the node
  # exporter and the other recommended packages.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >&2
fi
find_both
