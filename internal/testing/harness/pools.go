package harness

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// FakeRunnerPool is one organization runner pool whose runners are the
// fakerunner stand-in (internal/testing/testenv/fakerunner): it claims a job from
// the GitHub double and reports it to the webhook server, as a runner would.
type FakeRunnerPool struct {
	Name, Org, Repo       string
	Labels                []string
	VCPU                  float64
	MemoryMiB, StorageGiB int
	Autosleep             string
	MinIdle, MaxMachines  int
	PickupTimeout         string
	// Retries, when set, is how often a runner retries a webhook delivery.
	Retries int
	// Persistent makes a persistent-mode pool: the install step puts
	// stand-ins for actions/runner's config.sh and svc.sh in
	// $HOME/actions-runner, so Drydock's own registration script registers
	// a fakerunner with a registration token and starts it as the
	// machine's runner service, which takes job after job.
	Persistent bool
	// Setup, when set, is a setup step's shell script (run on every new
	// machine before the runner is installed).
	Setup string
	// LeaseCheckEvery, when set, is the pool's lease_check_every.
	LeaseCheckEvery string
	// Repositories the pool serves (owner/name, or "*"); default Org/Repo.
	Repositories []string
	// AllowPublic lets the pool take public repositories' jobs.
	AllowPublic bool
	// Isolation, when set, is the pool's isolation (per-repo, shared, fresh).
	Isolation string
	// RunnerGroupID of a JIT pool (default FakeRunnerGroupID). A
	// persistent pool registers in the Default group: allow_default_group.
	RunnerGroupID int64
}

// FakeRunnerGroupID is the organization runner group the fake pools'
// JIT runners register in (not the Default group, which every
// repository of the organization may use).
const FakeRunnerGroupID = 2

// FakeRunnerPools registers the pools' organizations and repositories with
// the GitHub double and returns RUNNER_POOLS for them (for Options.Pools).
func (h *Harness) FakeRunnerPools(ps ...FakeRunnerPool) (string, error) {
	var all []any
	for _, p := range ps {
		h.GH.AddOrg(p.Org)
		h.GH.AddRepo(p.Org, p.Repo)
		for _, r := range p.Repositories {
			if o, n, ok := strings.Cut(r, "/"); ok && r != "*" {
				h.GH.AddRepo(o, n)
			}
		}
		all = append(all, h.fakeRunnerPool(p))
	}
	b, err := json.Marshal(map[string]any{"pools": all})
	return string(b), err
}

func (h *Harness) fakeRunnerPool(p FakeRunnerPool) map[string]any {
	common := []string{"-github", h.GH.URL(), "-webhook", h.WebhookURL, "-secret", Secret}
	if p.Retries > 0 {
		common = append(common, "-retries", strconv.Itoa(p.Retries))
	}
	bin := filepath.Join(h.Bins, "fakerunner")
	pool := map[string]any{
		"name": p.Name, "labels": p.Labels, "scope": map[string]any{"kind": "org", "org": p.Org},
		"machine":  map[string]any{"vcpu": p.VCPU, "memory_mib": p.MemoryMiB, "storage_gib": p.StorageGiB, "autosleep": p.Autosleep},
		"min_idle": p.MinIdle, "max_machines": p.MaxMachines, "pickup_timeout": p.PickupTimeout,
		"install":        map[string]any{"run": `mkdir -p "$HOME/actions-runner"`},
		"runner_command": append(append([]string{bin}, common...), "-wait", "60s"),
	}
	if p.LeaseCheckEvery != "" {
		pool["lease_check_every"] = p.LeaseCheckEvery
	}
	pool["repositories"] = p.Repositories
	if len(p.Repositories) == 0 {
		pool["repositories"] = []string{p.Org + "/" + p.Repo}
	}
	if p.AllowPublic {
		pool["allow_public"] = true
	}
	if p.Isolation != "" {
		pool["isolation"] = p.Isolation
	}
	pool["runner_group_id"] = p.RunnerGroupID
	if p.RunnerGroupID == 0 {
		pool["runner_group_id"] = FakeRunnerGroupID
	}
	if p.Setup != "" {
		pool["setup"] = []any{map[string]any{"name": "setup", "run": p.Setup}}
	}
	if p.Persistent {
		pool["mode"] = "persistent"
		pool["allow_default_group"] = true
		pool["install"] = map[string]any{"name": "install the stand-in runner", "run": PersistentRunnerInstall(bin, common...)}
		delete(pool, "runner_command")
	}
	return pool
}

// PersistentRunnerInstall is an install step that writes config.sh and
// svc.sh stand-ins running the fakerunner at bin with args (-github,
// -webhook, -secret ...): config.sh registers it (fakerunner -configure,
// which takes config.sh's arguments and, like it, the registration token
// from --token or ACTIONS_RUNNER_INPUT_TOKEN), svc.sh install <user>
// records the service's user, and svc.sh start runs its service
// (-persistent) as that user once per machine, in its own session so that
// it outlives the command that started it. config.sh runs the fakerunner as a
// child, not exec: like the real config.sh (bash running Runner.Listener),
// its own process keeps its argv while the registration runs.
func PersistentRunnerInstall(bin string, args ...string) string {
	cmd := shellQuote(append([]string{bin}, args...))
	return fmt.Sprintf(`set -eu
d="$HOME/actions-runner"
mkdir -p "$d"
cat >"$d/config.sh" <<'CONFIG'
#!/bin/sh
set -eu
%[1]s -configure -config-file "$HOME/actions-runner/.runner" "$@"
CONFIG
cat >"$d/svc.sh" <<'SVC'
#!/bin/sh
set -eu
d="$(cd "$(dirname "$0")" && pwd)"
case "$1" in
  install) echo "${2:-}" >"$d/.service" ;;
  start)
    if [ -f "$d/runner.pid" ] && kill -0 "$(cat "$d/runner.pid")" 2>/dev/null; then exit 0; fi
    # As the user the service was installed for (svc.sh install <user>),
    # as systemd runs the real one.
    user="$(cat "$d/.service")"
    as=""
    if [ -n "$user" ]; then
      as="setpriv --reuid=$user --regid=$(id -g "$user") --clear-groups --no-new-privs --"
      export HOME="$(getent passwd "$user" | cut -d: -f6)" USER="$user" LOGNAME="$user"
    fi
    setsid nohup $as %[1]s -persistent "$d/.runner" >>"$d/runner.log" 2>&1 </dev/null 9>&- &
    echo $! >"$d/runner.pid" ;;
  *) echo "svc.sh: $1 not supported by the stand-in" >&2; exit 2 ;;
esac
SVC
chmod +x "$d/config.sh" "$d/svc.sh"
`, cmd)
}

// JITRunnerInstall is an install step that writes a run.sh stand-in into
// $HOME/actions-runner running the fakerunner at bin with args and run.sh's
// own arguments (--jitconfig), so a pool without runner_command starts it
// with Drydock's default runner command. Like the real run.sh (bash running
// run-helper.sh running Runner.Listener), it runs the runner as a child:
// its own process keeps its argv while the runner runs.
func JITRunnerInstall(bin string, args ...string) string {
	cmd := shellQuote(append([]string{bin}, args...))
	return fmt.Sprintf(`set -eu
d="$HOME/actions-runner"
mkdir -p "$d"
cat >"$d/run.sh" <<'RUN'
#!/bin/sh
%[1]s "$@"
RUN
chmod +x "$d/run.sh"
`, cmd)
}

// shellQuote joins args for sh, each single-quoted.
func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
