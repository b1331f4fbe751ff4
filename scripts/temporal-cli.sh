#!/usr/bin/env bash
# Prints the path of the Temporal CLI (which carries the dev server), building
# it from the Go module proxy the first time. No binary can be downloaded on
# Drydock's build machines, so it is compiled once into a versioned cache
# directory outside the repo, where later clones and CI runs find it.
#
# v1.5.1 is pinned: later tags fail `go install` because of replace directives.
set -euo pipefail

version="${TEMPORAL_CLI_VERSION:-v1.5.1}"
cache="${DRYDOCK_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/drydock}"
dir="$cache/temporal-cli/$version"
bin="$dir/temporal"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9 # one build at a time, however many clones ask
if [ ! -x "$bin" ]; then
  echo "Building the Temporal CLI $version from the Go module proxy into $dir" >&2
  echo "(first time only: this takes several minutes on 2 cores; later runs reuse it)" >&2
  tmpbin=$(mktemp -d "$dir/.build.XXXXXX")
  work=$(mktemp -d)
  trap 'rm -rf "$tmpbin" "$work"' EXIT
  start=$(date +%s)
  (cd "$work" && GOBIN="$tmpbin" GOFLAGS=-mod=mod go install "github.com/temporalio/cli/cmd/temporal@$version") >&2
  mv "$tmpbin/temporal" "$bin"
  echo "Built the Temporal CLI in $(( $(date +%s) - start ))s: $bin" >&2
fi
echo "$bin"
