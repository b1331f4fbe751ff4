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
if bin="$(command -v dot)"; then
  echo "$bin"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
exec 9>"${TMPDIR:-/tmp}/drydock-graphviz.lock"
flock 9 # one install at a time, however many clones ask
if ! bin="$(command -v dot)"; then
  echo "Installing graphviz with apt-get (first time only)" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends graphviz >&2
  bin="$(command -v dot)"
fi
echo "$bin"
