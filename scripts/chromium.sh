#!/usr/bin/env bash
# Prints the path of Chromium, which the browser end-to-end test
# (e2e/login_browser_test.go) drives headless, installing the Debian package
# `chromium` with apt-get the first time (as root, or through sudo), the way
# temporal-cli.sh provides the Temporal CLI. $CHROMIUM, when set, wins.
#
# The test runs Chromium with --no-sandbox: its sandbox cannot start as root
# (CI containers), and the only pages it opens are the test's own.
set -euo pipefail

if [ -n "${CHROMIUM:-}" ] && [ -x "${CHROMIUM}" ]; then
  echo "$CHROMIUM"
  exit 0
fi
find_chromium() { command -v chromium || command -v chromium-browser; }
. "$(dirname "$0")/lib/apt.sh"
apt_provide chromium find_chromium
