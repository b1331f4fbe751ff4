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
if bin="$(find_chromium)"; then
  echo "$bin"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
exec 9>"${TMPDIR:-/tmp}/drydock-chromium.lock"
flock 9 # one install at a time, however many clones ask
if ! bin="$(find_chromium)"; then
  echo "Installing chromium with apt-get (first time only)" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >&2
  bin="$(find_chromium)"
fi
echo "$bin"
