# Sourced by the scripts that provide a Debian package's program
# (chromium.sh, graphviz.sh, prometheus.sh): apt_provide PACKAGE FIND runs
# the function FIND, which prints the program's path(s) and fails when it is
# missing; when it fails, PACKAGE is installed with apt-get (as root, or
# through sudo), one install at a time however many clones ask, and FIND is
# run again. What FIND prints is the script's answer.

apt_provide() {
  local package="$1" find="$2" sudo=""
  if "$find"; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  exec 9>"${TMPDIR:-/tmp}/drydock-$package.lock"
  flock 9
  if ! "$find" >/dev/null; then
    echo "Installing $package with apt-get (first time only)" >&2
    $sudo apt-get update -qq >&2
    # --no-install-recommends: the program, without what its package merely
    # recommends (prometheus's node exporter, chromium's extras).
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$package" >&2
  fi
  "$find"
}
