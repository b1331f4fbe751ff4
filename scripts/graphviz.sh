#!/usr/bin/env bash
# Prints the path of Graphviz's `dot`, which `make docs` renders
# docs/architecture.dot with, installing the Debian package `graphviz` with
# apt-get the first time (as root, or through sudo), the way chromium.sh
# provides Chromium. $DOT, when set, wins.
set -euo pipefail

if [ -n "${DOT:-}" ] && [ -x "${DOT}" ]; then
  echo "$DOT"
  exit 0
fi
find_dot() { command -v dot; }
. "$(dirname "$0")/lib/apt.sh"
apt_provide graphviz find_dot
