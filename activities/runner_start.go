package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/pools"
)

// StartRunnerInput names the JIT runner to start on a leased machine.
type StartRunnerInput struct {
	Pool, MachineID, RunnerName string
	JobID                       int64
	// Repo is the job's repository (owner/name): a per-repo or fresh pool
	// at organization scope registers the runner there (pools.Pool.
	// RunnerScope). Empty (workflows started before it was passed): the
	// pool's scope.
	Repo string `json:",omitempty"`
	// InstallationID is the GitHub App installation of the job's event
	// (0: the configured default installation).
	InstallationID int64
}

// StartJITRunner registers a single-use runner named RunnerName with a
// just-in-time config for the pool's scope, labels and runner group, and
// starts it detached on the machine as RunnerUser, with no new privileges
// (the pool's RunnerCommand, default `"$HOME/actions-runner/run.sh"`, in
// the runner's home, in its own session and PID namespace, output to
// root's $HOME/.drydock/runner-<name>.log), after cleanScript wiped what the
// machine's last job left. The config reaches the runner only as
// ACTIONS_RUNNER_INPUT_JITCONFIG in the execution's environment, which
// actions/runner reads and removes before it runs a job: it is in no argv,
// job step environment, log line, error, result or workflow history.
//
// A retry finds the name registered by the previous attempt (GitHub's 409):
// a runner that is online or busy is running, so the activity is done; an
// offline one never connected, so it is removed and registered afresh.
func (a *Runners) StartJITRunner(ctx context.Context, in StartRunnerInput) error {
	p, err := a.jitPool(in)
	if err != nil {
		return err
	}
	api, err := a.api(in.InstallationID)
	if err != nil {
		return err
	}
	scope, err := jitScope(p, in)
	if err != nil {
		return err
	}
	log := a.logger().With("pool", p.Name, "machine_id", in.MachineID, "runner", in.RunnerName, "job_id", in.JobID, "scope", scopeName(scope))
	const tries = 3
	for range tries {
		config, runnerID, err := api.GenerateJITConfig(ctx, scope, in.RunnerName, p.Labels, p.RunnerGroup(scope))
		if errors.Is(err, gh.ErrRunnerExists) {
			running, err := a.reclaimName(ctx, api, scope, in.RunnerName, log)
			if err != nil || running {
				return err
			}
			continue
		}
		if err != nil {
			return classifyGitHub(err)
		}
		return a.startRegistered(ctx, api, scope, p, in, jitRegistration{config: config, runnerID: runnerID}, log)
	}
	return temporal.NewApplicationError(fmt.Sprintf("runner name %s is still taken in %s after removing its stale registration %d times", in.RunnerName, p.Name, tries), ErrTypeGitHubUnavailable)
}

// jitPool is the pool of a JIT runner start, once the start is known to be
// valid: a runner command that does not use the removed environment
// variable, a machine, a usable runner name.
func (a *Runners) jitPool(in StartRunnerInput) (*pools.Pool, error) {
	p, err := a.pool(in.Pool)
	if err != nil {
		return nil, err
	}
	if err := CheckRunnerCommand(p); err != nil {
		return nil, invalid("%v", err)
	}
	if err := a.machine(in.MachineID); err != nil {
		return nil, err
	}
	if err := checkRunnerName(in.RunnerName); err != nil {
		return nil, err
	}
	return p, nil
}

// jitScope is where the job's runner registers (pools.Pool.RunnerScope).
func jitScope(p *pools.Pool, in StartRunnerInput) (pools.Scope, error) {
	scope := p.RunnerScope(in.Repo)
	if p.RegistersAtRepositories() && scope == p.Scope {
		// At the organization, GitHub could hand the runner another
		// repository's job: never fall back to it.
		return pools.Scope{}, invalid("pool %s registers its runners at their job's repository, and job %d's repository %q is not one of %s",
			p.Name, in.JobID, in.Repo, p.Scope.Org)
	}
	return scope, nil
}

// jitRegistration is a runner name's just-in-time registration at GitHub.
type jitRegistration struct {
	config   string // the JIT config: a secret
	runnerID int64
}

// startRegistered starts the registered runner detached on the machine
// (see StartJITRunner).
func (a *Runners) startRegistered(ctx context.Context, api *gh.API, scope pools.Scope, p *pools.Pool, in StartRunnerInput, reg jitRegistration, log *slog.Logger) error {
	caches, err := cacheList(p)
	if err != nil {
		return err
	}
	argv := p.RunnerCommand
	if len(argv) == 0 {
		argv = []string{"sh", "-c", defaultRunnerScript}
	}
	res, err := a.run(ctx, Command{
		MachineID: in.MachineID, Name: "start runner " + in.RunnerName,
		Argv: append([]string{"sh", "-c", startRunnerScript, "drydock-runner", cleanScript}, argv...),
		Env: map[string]string{
			JITConfigEnv: reg.config, "DRYDOCK_RUNNER_NAME": in.RunnerName, "DRYDOCK_POOL": p.Name,
			"DRYDOCK_CACHES": caches,
			"DRYDOCK_JOB_ID": strconv.FormatInt(in.JobID, 10), "DRYDOCK_RUNNER_USER": RunnerUser,
			"DRYDOCK_AFTER_RUNNER_SCRIPT": afterRunnerScript,
		},
		Timeout: time.Minute,
	}, "runner-start:"+strconv.FormatInt(reg.runnerID, 10)) // a new registration is a new command
	if err != nil {
		return err
	}
	if strings.Contains(res.StdoutTail, runnerAlreadyStarted) {
		// An earlier attempt started this runner and then failed (its
		// answer was lost), and the runner has already run a job and
		// deregistered, freeing the name: the registration just made
		// is not needed, and nothing was started.
		if err := api.RemoveRunner(ctx, scope, reg.runnerID); err != nil && !errors.Is(err, gh.ErrRunnerNotFound) {
			log.WarnContext(ctx, "could not remove the unneeded registration; the reconciler will", "runner_id", reg.runnerID, "error", err)
		}
		log.InfoContext(ctx, "JIT runner already started on the machine: a previous attempt started it", "execution_id", res.ExecutionID)
		return nil
	}
	log.InfoContext(ctx, "JIT runner started", "runner_id", reg.runnerID, "execution_id", res.ExecutionID)
	return nil
}

// reclaimName handles a runner name that is already registered: running
// reports a runner that is online or busy (a previous attempt started it);
// an offline one is removed so the name can be registered again.
func (a *Runners) reclaimName(ctx context.Context, api *gh.API, scope pools.Scope, name string, log *slog.Logger) (running bool, err error) {
	r, found, err := api.RunnerByName(ctx, scope, name)
	if err != nil {
		return false, classifyGitHub(err)
	}
	if !found {
		return false, nil // removed meanwhile: register again
	}
	if r.Online() || r.Busy {
		log.InfoContext(ctx, "JIT runner already registered and connected: a previous attempt started it", "runner_id", r.ID, "status", r.Status, "busy", r.Busy)
		return true, nil
	}
	err = api.RemoveRunner(ctx, scope, r.ID)
	switch {
	case errors.Is(err, gh.ErrRunnerBusy):
		return true, nil // it connected and took a job meanwhile
	case errors.Is(err, gh.ErrRunnerNotFound), err == nil:
		log.InfoContext(ctx, "removed a stale offline registration of the runner name", "runner_id", r.ID)
		return false, nil
	default:
		return false, classifyGitHub(err)
	}
}
