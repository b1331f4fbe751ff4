package workflows

import (
	"maps"
	"strconv"

	"github.com/drydock-dev/drydock/internal/previewspec"
)

// The scripts below are Drydock's own, constant text. Pull request data
// (branch, SHA, clone URL) reaches them only through environment variables
// and argv elements, expanded by the shell as quoted parameters, so a branch
// named `x$(touch /tmp/pwned)` is just a string. The spec's own commands are
// the repository owner's (read from the base branch) and run the same way.

// checkoutScript fetches DRYDOCK_SHA from DRYDOCK_CLONE_URL into $HOME/src
// (by SHA; when the server refuses unadvertised objects, by the branch) and
// checks it out. It keeps untracked build output between pushes.
const checkoutScript = `set -eu
src="$HOME/src"
mkdir -p "$src"
cd "$src"
[ -d .git ] || git init -q
git fetch -q --depth 50 -- "$DRYDOCK_CLONE_URL" "$DRYDOCK_SHA" 2>/dev/null ||
  git fetch -q -- "$DRYDOCK_CLONE_URL" "refs/heads/$DRYDOCK_BRANCH"
git -c advice.detachedHead=false checkout -q --force "$DRYDOCK_SHA"
echo "checked out $(git rev-parse HEAD)"
`

// stepScript runs a spec step ("$@") in the checkout.
const stepScript = `cd "$HOME/src" && exec "$@"`

// startScript (re)starts the app ("$@") as a daemon in its own session, so a
// redeploy can stop the whole old process group before starting the new one.
// Its output goes to $HOME/.drydock/app.log.
const startScript = `set -u
state="$HOME/.drydock"
mkdir -p "$state"
if [ -f "$state/app.pid" ]; then
  old=$(cat "$state/app.pid")
  kill -TERM "-$old" 2>/dev/null || true
  i=0
  while kill -0 "-$old" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  kill -KILL "-$old" 2>/dev/null || true
fi
cd "$HOME/src"
setsid "$@" >"$state/app.log" 2>&1 </dev/null &
echo $! >"$state/app.pid"
echo "started pid $!"
`

// appLogScript prints the end of the app's log, for failure reports.
const appLogScript = `tail -c 4000 "$HOME/.drydock/app.log" 2>/dev/null || echo "(no app log)"`

func checkoutArgv() []string { return []string{"sh", "-c", checkoutScript} }

func stepArgv(st previewspec.Step) []string {
	return append([]string{"sh", "-c", stepScript, "drydock-step"}, st.Argv()...)
}

func startArgv(st previewspec.Step) []string {
	return append([]string{"sh", "-c", startScript, "drydock-start"}, st.Argv()...)
}

// deployEnv is the environment of every command of a deploy: the spec's env
// plus the DRYDOCK_* variables describing the pull request.
func deployEnv(ev PullRequestEvent, spec previewspec.Spec) map[string]string {
	env := maps.Clone(spec.Env)
	if env == nil {
		env = map[string]string{}
	}
	env["DRYDOCK_REPO"] = ev.Owner + "/" + ev.Repo
	env["DRYDOCK_PR_NUMBER"] = strconv.Itoa(ev.Number)
	env["DRYDOCK_SHA"] = ev.HeadSHA
	env["DRYDOCK_BRANCH"] = ev.HeadRef
	env["DRYDOCK_BASE_BRANCH"] = ev.BaseRef
	env["DRYDOCK_CLONE_URL"] = ev.CloneURL
	return env
}
