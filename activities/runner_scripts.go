package activities

// The shell scripts the runner activities run on pool machines. Each is a
// constant: the variable parts reach it in the execution's environment
// variables, so nothing is spliced into a shell string and no secret is in
// an execution's argv.
//
// Who owns what on a runner machine. Dedalus runs a machine's commands as
// root, with root's home ($HOME below, /root on a real machine):
//   - $HOME/.drydock (root's, mode 700): Drydock's state: the install
//     marker, the cleanup script and its lock, the runners' logs.
//   - $HOME/actions-runner (root's): the pristine runner install, as the
//     pool's install step left it; the runner user cannot reach it.
//   - /home/runner (RunnerUser's, mode 700): the runner's home. Before every
//     JIT runner, and after it, it holds only the pool's declared caches, a
//     fresh copy of the runner install (actions-runner: files root's and
//     read-only, hard links where possible; the directory itself the
//     runner's, for its .runner, _diag and _work) and an empty tmp.
//
// The runner and its jobs run as RunnerUser, with no new privileges
// (setpriv --no-new-privs: no sudo, no setuid programs), in a PID namespace
// of their own: whatever a job starts dies with the runner.

// RunnerUser is the unprivileged user a pool machine's runner and its jobs
// run as. SetupMachine creates it (useradd, home /home/runner) after the
// pool's setup steps, which run as root; a setup step may create it itself
// (with a UID of its choice) and it is then used as it is.
const RunnerUser = "runner"

// runnerUserFuncs are the shell functions the scripts share: ensure_runner_user
// creates RunnerUser (DRYDOCK_RUNNER_USER) when missing and sets runner_home,
// runner_gid and state (root's $HOME/.drydock, mode 700).
const runnerUserFuncs = `
ensure_runner_user() {
  user="${DRYDOCK_RUNNER_USER:?}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "the runner user $user can only be created and used as root (Dedalus runs a machine's commands as root)" >&2
    exit 1
  fi
  if ! id -u "$user" >/dev/null 2>&1; then
    shell=/bin/bash; [ -x "$shell" ] || shell=/bin/sh
    group=--user-group; if getent group "$user" >/dev/null 2>&1; then group="--gid=$user"; fi
    useradd --no-log-init --create-home --home-dir "/home/$user" --shell "$shell" "$group" "$user"
    # No logins (ssh, su, cron): the runner starts through setpriv, which
    # asks no one; a job that plants ~/.ssh/authorized_keys gets nothing.
    usermod --expiredate 1 "$user"
  fi
  if [ "$(id -u "$user")" -eq 0 ]; then echo "the runner user $user is root" >&2; exit 1; fi
  runner_home="$(getent passwd "$user" | cut -d: -f6)"
  case "$runner_home" in ""|/|/root|"$HOME") echo "the runner user $user has no home of its own ('$runner_home')" >&2; exit 1 ;; esac
  runner_gid="$(id -g "$user")"
  mkdir -p "$runner_home"
  chown "$user:$runner_gid" "$runner_home"
  chmod 700 "$runner_home"
  state="$HOME/.drydock"
  mkdir -p "$state"
  chmod 700 "$HOME" "$state"
}
`

// checkInstallScript prints "installed" when SetupMachine finished on this
// machine for DRYDOCK_RUNNER_VERSION.
const checkInstallScript = `if [ -f "$HOME/.drydock/runner-$DRYDOCK_RUNNER_VERSION.installed" ]; then echo installed; else echo missing; fi`

// createRunnerUserScript creates the runner user (SetupMachine).
const createRunnerUserScript = `set -eu
` + runnerUserFuncs + `
ensure_runner_user
echo "runner user: $(id "$user"), home $runner_home"
`

// defaultInstallScript downloads actions/runner DRYDOCK_RUNNER_VERSION into
// $HOME/actions-runner. The runner's own dependencies (libicu...) belong in
// the machine image or the pool's setup steps.
const defaultInstallScript = `set -eu
v="$DRYDOCK_RUNNER_VERSION"
case "$(uname -m)" in
  aarch64|arm64) arch=arm64 ;;
  *) arch=x64 ;;
esac
dir="$HOME/actions-runner"
mkdir -p "$dir"
tgz="$dir/actions-runner-linux-$arch-$v.tar.gz.part"
curl -fsSL --retry 3 -o "$tgz" "https://github.com/actions/runner/releases/download/v$v/actions-runner-linux-$arch-$v.tar.gz"
tar --no-same-owner -xzf "$tgz" -C "$dir"
rm -f "$tgz"
echo "installed actions/runner $v ($arch) in $dir"
`

// markInstalledScript records a finished SetupMachine. The install is
// root's and read-only to everyone else whatever the install step did (a
// tar run as root keeps the archive's owners, which may be the runner
// user's IDs): the runner's copies are hard links to these files.
const markInstalledScript = `set -eu
mkdir -p "$HOME/.drydock" "$HOME/actions-runner"
chmod 700 "$HOME/.drydock"
chown -R 0:0 "$HOME/actions-runner"
chmod -R go-w "$HOME/actions-runner"
date -u +%Y-%m-%dT%H:%M:%SZ >"$HOME/.drydock/runner-$DRYDOCK_RUNNER_VERSION.installed"
`

// startRunnerScript starts the runner command ("$@", after the cleanup
// script as $1) detached, in its own session, so it outlives the execution
// and keeps running across sleep and wake. Its output goes to
// $HOME/.drydock/runner-<name>.log.
//
// The runner runs as the runner user with no new privileges, in a PID
// namespace of its own (unshare): when it exits after its job, the kernel
// kills every process the job left behind (background daemons, double
// forks, setsid), and its /proc shows only the job's processes. It has no
// supplementary groups (a docker group would be root). HOME, USER, LOGNAME
// and TMPDIR are the runner user's; the cleanup's variables are unset; the
// rest of the execution's environment reaches it (and its jobs), the JIT
// config in ACTIONS_RUNNER_INPUT_JITCONFIG, which the runner removes before
// it starts a job. Once it has exited, the
// wrapper runs the cleanup script as root (cleanScript, written to
// $HOME/.drydock/clean-between-jobs.sh, through afterRunnerScript), and a
// new runner is started only after a cleanup (flock on the same lock), so
// a job never finds what the previous job on the machine left outside the
// pool's declared caches; a cleanup that comes late (its runner's job was
// reported complete, the next runner started first) leaves the next runner
// alone.
const startRunnerScript = `set -eu
` + runnerUserFuncs + `
ensure_runner_user
log="$state/runner-$DRYDOCK_RUNNER_NAME.log"
cd "$HOME"
if [ -e "$log" ]; then
  # A runner name is one job attempt's: an earlier try of this activity
  # started it (it may even have run a job and gone). Never a second one.
  echo "` + runnerAlreadyStarted + ` $DRYDOCK_RUNNER_NAME, log $log"
  exit 0
fi
if ! unshare --pid --fork --kill-child --mount-proc true; then
  echo "cannot start the runner in a PID namespace of its own (unshare --pid --mount-proc, util-linux, as root)" >&2
  exit 1
fi
# The cleanup fails closed: without these it could not kill the last
# job's processes or serialize with the next runner.
for tool in setpriv pkill ps flock find; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "cannot isolate the runner's jobs: $tool is missing (util-linux, procps, findutils)" >&2
    exit 1
  fi
done
export DRYDOCK_RUNNER_HOME="$runner_home" DRYDOCK_RUNNER_INSTALL="$HOME/actions-runner"
afterRunner="${DRYDOCK_AFTER_RUNNER_SCRIPT:?}"
unset DRYDOCK_AFTER_RUNNER_SCRIPT
exec 8>"$state/clean.lock"
if command -v flock >/dev/null 2>&1; then flock 8; fi
printf '%s\n' "$1" >"$state/clean-between-jobs.sh"
printf '%s' "$afterRunner" >"$state/after-runner.sh"
chmod 700 "$state/clean-between-jobs.sh" "$state/after-runner.sh"
shift
# Whatever an earlier job left is gone before this runner starts: the
# last runner's cleanup ran to its end for the same caches and install
# (clean.done), or it runs now (a cleanup interrupted by a crash, a runner
# started before cleanups existed, a changed configuration).
# The install is root's and read-only to others (machines set up before
# markInstalledScript did so may have kept an archive's owners).
if [ -d "$DRYDOCK_RUNNER_INSTALL" ] && [ -n "$(find "$DRYDOCK_RUNNER_INSTALL" \( ! -user 0 -o -perm /022 \) -print -quit)" ]; then
  chown -hR 0:0 "$DRYDOCK_RUNNER_INSTALL"
  chmod -R go-w "$DRYDOCK_RUNNER_INSTALL"
  rm -f "$state/clean.done"
fi
if [ "$(cat "$state/clean.done" 2>/dev/null || true)" != "$DRYDOCK_CACHES|$DRYDOCK_RUNNER_INSTALL" ]; then
  sh "$state/clean-between-jobs.sh" 8>&-
fi
rm -f "$state/clean.done"
# From now on this runner is the machine's: a late cleanup of the last one
# (after-runner.sh) leaves it alone.
printf '%s\n' "$DRYDOCK_RUNNER_NAME" >"$state/runner.current"
exec 8>&-
wrapper='status=0
(
  cd "$DRYDOCK_RUNNER_HOME/actions-runner"
  export HOME="$DRYDOCK_RUNNER_HOME" USER="$DRYDOCK_RUNNER_USER" LOGNAME="$DRYDOCK_RUNNER_USER" TMPDIR="$DRYDOCK_RUNNER_HOME/tmp"
  unset DRYDOCK_CACHES DRYDOCK_RUNNER_HOME DRYDOCK_RUNNER_INSTALL DRYDOCK_RUNNER_USER
  exec unshare --pid --fork --kill-child --mount-proc -- \
    setpriv --reuid="$USER" --regid="$(id -g "$USER")" --clear-groups --no-new-privs -- "$@"
) || status=$?
sh "$HOME/.drydock/after-runner.sh" "$DRYDOCK_RUNNER_NAME"
exit $status'
if command -v setsid >/dev/null 2>&1; then
  setsid nohup sh -c "$wrapper" drydock-runner "$@" >"$log" 2>&1 </dev/null &
else
  nohup sh -c "$wrapper" drydock-runner "$@" >"$log" 2>&1 </dev/null &
fi
echo "started runner $DRYDOCK_RUNNER_NAME as $user (pid $!), log $log"
`

// cleanScript makes the runner user's share of the machine as a fresh
// machine's but for the pool's declared caches (DRYDOCK_CACHES: one
// directory a line, relative to the runner's home):
//  1. every process of the runner user is killed (but the runner itself,
//     for a persistent runner);
//  2. every file of its home goes but the caches (a cache whose path goes
//     through a symbolic link, which a job can plant to have the cleanup
//     move another file, is wiped, not kept) and, for a persistent runner,
//     its actions-runner less the work directory _work;
//  3. every file it owns in /tmp, /var/tmp and /dev/shm goes;
//  4. (jit) its actions-runner is a fresh copy of the pristine install
//     (DRYDOCK_RUNNER_INSTALL), and its temporary directory is empty.
//
// DRYDOCK_CLEAN_MODE says who runs it: "jit" (default) as root, for the
// runner user DRYDOCK_RUNNER_USER with home DRYDOCK_RUNNER_HOME, before and
// after every JIT runner; "persistent" as the runner user itself, as a
// persistent runner's job-completed hook (persistentHookScript), which
// actions/runner runs after each job's steps, before it takes another job.
const cleanScript = `set -eu
mode="${DRYDOCK_CLEAN_MODE:-jit}"
if [ "$mode" = persistent ]; then
  user="$(id -un)"
  home="$HOME"
else
  user="${DRYDOCK_RUNNER_USER:-}"
  home="${DRYDOCK_RUNNER_HOME:-}"
fi
case "$home" in ""|/|/root) echo "clean: refusing to clean the home directory '$home'" >&2; exit 1 ;; esac
if [ -z "$user" ] || [ "$(id -u "$user")" -eq 0 ]; then echo "clean: refusing to clean for user '$user'" >&2; exit 1; fi
uid="$(id -u "$user")"
gid="$(id -g "$user")"
as_runner() { if [ "$mode" = persistent ]; then "$@"; else setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"; fi; }
if [ "$mode" = persistent ]; then
  # Everything of the user but this script's ancestors: the runner.
  keep=" $$ "
  p=$$
  while [ "$p" -gt 1 ]; do
    p="$(sed 's/^.*) //' "/proc/$p/stat" | cut -d' ' -f2)"
    keep="$keep$p "
  done
  for pid in $(pgrep -u "$uid"); do
    case "$keep" in *" $pid "*) continue ;; esac
    kill -KILL "$pid" 2>/dev/null || true
  done
else
  i=0
  while :; do
    rc=0
    pkill -KILL -u "$uid" || rc=$?
    case "$rc" in
      0) ;;      # some were killed: look again
      1) break ;; # none left
      *) echo "clean: pkill failed ($rc): the processes of $user may live on" >&2; exit 1 ;;
    esac
    # Zombies match too; they are gone as processes.
    left="$(ps -o stat= -u "$uid")" || { echo "clean: ps failed" >&2; exit 1; }
    if ! printf '%s\n' "$left" | grep -qv '^Z'; then break; fi
    i=$((i+1))
    if [ "$i" -ge 100 ]; then echo "clean: processes of $user survive SIGKILL" >&2; exit 1; fi
    sleep 0.1
  done
fi
hold="$home/.drydock-caches-held"
rm -rf -- "$hold"
mkdir -m 700 "$hold"
nolink() {
  p="$home"; rest="$1"
  while [ -n "$rest" ]; do
    part="${rest%%/*}"
    if [ "$part" = "$rest" ]; then rest=""; else rest="${rest#*/}"; fi
    p="$p/$part"
    if [ -L "$p" ]; then return 1; fi
  done
}
caches="${DRYDOCK_CACHES:-}"
printf '%s\n' "$caches" | while IFS= read -r c; do
  [ -n "$c" ] || continue
  if [ -d "$home/$c" ] && nolink "$c"; then
    mkdir -p "$hold/$(dirname -- "$c")"
    mv -- "$home/$c" "$hold/$c"
  fi
done
# One rm and one find for all (each process started is time the machine
# is awake between two jobs).
set --
for e in "$home"/* "$home"/.[!.]* "$home"/..?*; do
  [ -e "$e" ] || [ -L "$e" ] || continue
  [ "$e" = "$hold" ] && continue
  if [ "$mode" = persistent ] && [ "$e" = "$home/actions-runner" ] && [ ! -L "$e" ]; then
    rm -rf -- "$e/_work"
    continue
  fi
  set -- "$@" "$e"
done
if [ "$#" -gt 0 ]; then rm -rf -- "$@"; fi
set --
for d in /tmp /var/tmp /dev/shm /run/lock /dev/mqueue; do
  if [ -d "$d" ]; then set -- "$@" "$d"; fi
done
# The home is pruned, not swept, wherever it is mounted from. The runner
# can only have written into directories it owns (removed whole) or
# world-writable ones, so no other directory is descended into. -xdev
# holds for each directory: none is left for another filesystem.
if [ "$#" -gt 0 ]; then
  find "$@" -xdev -mindepth 1 \( -samefile "$home" -prune \) -o \( -user "$uid" -prune -exec rm -rf -- {} + \) \
    -o \( -type d ! -perm -0002 -prune \) 2>/dev/null || true
fi
printf '%s\n' "$caches" | while IFS= read -r c; do
  [ -n "$c" ] || continue
  if [ -e "$hold/$c" ] && [ ! -e "$home/$c" ]; then
    as_runner mkdir -p "$home/$(dirname -- "$c")"
    mv -- "$hold/$c" "$home/$c"
  fi
done
rm -rf -- "$hold"
[ "$mode" = persistent ] && exit 0
src="${DRYDOCK_RUNNER_INSTALL:-}"
if [ -n "$src" ] && [ -d "$src" ]; then
  cp -al -- "$src" "$home/actions-runner" 2>/dev/null || { rm -rf -- "$home/actions-runner"; cp -a -- "$src" "$home/actions-runner"; }
  rm -rf -- "$home/actions-runner/_work"
else
  mkdir -p "$home/actions-runner"
fi
chown -h "$uid:$gid" "$home/actions-runner"
chmod 755 "$home/actions-runner"
install -d -o "$uid" -g "$gid" -m 700 "$home/tmp"
`

// afterRunnerScript runs after a JIT runner exited ($1: its name): the
// cleanup, unless another runner started on the machine meanwhile (its
// start ran the cleanup before it; cleaning now would kill it), in which
// case nothing. A finished cleanup is recorded (clean.done, with the
// caches and install it kept), so the next runner starts without another.
const afterRunnerScript = `set -eu
state="$HOME/.drydock"
exec 8>"$state/clean.lock"
if command -v flock >/dev/null 2>&1; then flock 8; fi
if [ "$(cat "$state/runner.current" 2>/dev/null || true)" != "$1" ]; then
  echo "runner $1 exited after another runner started: no cleanup"
  exit 0
fi
sh "$state/clean-between-jobs.sh" 8>&-
printf '%s' "${DRYDOCK_CACHES:-}|${DRYDOCK_RUNNER_INSTALL:-}" >"$state/clean.done"
`

// runnerAlreadyStarted is what startRunnerScript prints when a runner of
// that name was started on the machine before.
const runnerAlreadyStarted = "runner already started:"

// defaultRunnerScript is the default RunnerCommand: actions/runner's run.sh.
// It reads its JIT config from ACTIONS_RUNNER_INPUT_JITCONFIG (as it reads
// any --<arg> from ACTIONS_RUNNER_INPUT_<ARG>, the way actions-runner-controller
// starts it) and removes it from its own environment before it starts a
// job, so the config is in no argv (ps, /proc/<pid>/cmdline) and in no job
// step's environment.
const defaultRunnerScript = `exec "$HOME/actions-runner/run.sh"`

// persistentHookScript is a persistent runner's job-completed hook
// (ACTIONS_RUNNER_HOOK_JOB_COMPLETED, in the runner's .env): the cleanup
// as the runner user, with the caches registerScript recorded. It is
// root's (/etc/drydock), so a job cannot change it; but a job of a
// persistent runner runs as the runner's own user, which can stop it from
// running for later jobs (edit .env, replace the runner): between
// persistent runners' jobs the cleanup is hygiene, not a security
// boundary.
const persistentHookScript = `#!/bin/sh
DRYDOCK_CLEAN_MODE=persistent DRYDOCK_CACHES="$(cat /etc/drydock/caches 2>/dev/null || true)" exec sh /etc/drydock/clean-between-jobs.sh
`

// registerScript configures a persistent runner once, as the runner user
// (config.sh in a copy of the install in the runner's home), then installs
// its service for the runner user (svc.sh install runner) and starts it, so
// the runner resumes polling GitHub after every wake. flock serializes it
// with a retried attempt that may still be running.
const registerScript = `set -eu
` + runnerUserFuncs + `
ensure_runner_user
exec 9>"$state/register.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if [ -f "$state/persistent-started" ]; then
  # A retry after the service started: the runner may have run jobs since,
  # which can change every file of its directory, so nothing there is run
  # or written as root again.
  echo "runner $(cat "$state/persistent-started") already registered and started"
  exit 0
fi
# The cleanup after each job ($1: cleanScript), root's.
mkdir -p /etc/drydock
printf '%s\n' "$1" >/etc/drydock/clean-between-jobs.sh
printf '%s\n' "${DRYDOCK_CACHES:-}" >/etc/drydock/caches
printf '%s' "$DRYDOCK_HOOK_SCRIPT" >/etc/drydock/job-completed.sh
chown -R 0:0 /etc/drydock
chmod 755 /etc/drydock /etc/drydock/clean-between-jobs.sh /etc/drydock/job-completed.sh
chmod 644 /etc/drydock/caches
dir="$runner_home/actions-runner"
if [ -f "$dir/.runner" ]; then
  echo "runner already configured"
else
  rm -rf -- "$dir"
  cp -a -- "$HOME/actions-runner" "$dir"
  chown -R "$user:$runner_gid" "$dir"
  # As the runner user, in its home. The registration token is in
  # ACTIONS_RUNNER_INPUT_TOKEN (config.sh's environment input for --token),
  # never in an argv.
  (cd "$dir" && HOME="$runner_home" USER="$user" LOGNAME="$user" \
    setpriv --reuid="$user" --regid="$runner_gid" --clear-groups --no-new-privs -- \
    ./config.sh --unattended --url "$DRYDOCK_RUNNER_URL" \
      --name "$DRYDOCK_RUNNER_NAME" --labels "$DRYDOCK_RUNNER_LABELS" --work _work --replace) 9>&-
fi
# Nothing started from here on (the service) carries the token.
unset ACTIONS_RUNNER_INPUT_TOKEN
cd "$dir"
# The runner reads .env when it starts: the cleanup runs after every job.
# Written as the runner, in its own directory (no root write through a link).
setpriv --reuid="$user" --regid="$runner_gid" --clear-groups -- sh -c '
  { grep -v "^ACTIONS_RUNNER_HOOK_JOB_COMPLETED=" .env 2>/dev/null || true
    echo "ACTIONS_RUNNER_HOOK_JOB_COMPLETED=/etc/drydock/job-completed.sh"; } >.env.drydock && mv -f .env.drydock .env'

# The lock (fd 9) covers this script only: nothing it starts may keep it,
# or a retried registration would wait on it forever.
if [ ! -f .service ]; then ./svc.sh install "$user" 9>&-; fi
./svc.sh start 9>&-
printf '%s\n' "$DRYDOCK_RUNNER_NAME" >"$state/persistent-started"
echo "runner $DRYDOCK_RUNNER_NAME registered as a service of $user"
`
