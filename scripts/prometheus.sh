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
. "$(dirname "$0")/lib/apt.sh"
apt_provide prometheus find_both
