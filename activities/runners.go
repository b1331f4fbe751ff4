package activities

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/previewspec"
)

// Error types of the runner activities.
const (
	// ErrTypeGitHubNotConfigured: a runner activity that needs GitHub ran in
	// local mode (no GitHub credentials). Non-retryable.
	ErrTypeGitHubNotConfigured = "GitHubNotConfigured"
	// ErrTypeUnknownPool: the pool is not in the worker's configuration. Non-retryable.
	ErrTypeUnknownPool = "UnknownRunnerPool"
)

// errNoGitHub is the local-mode refusal of runner activities.
const errNoGitHub = "runner pools need GitHub credentials (GITHUB_TOKEN or GITHUB_APP_*)"

// Runners registers GitHub Actions runners on pool machines. Register it with
// a worker: w.RegisterActivity(&activities.Runners{...}).
type Runners struct {
	Machines *Machines   // runs commands on machines
	GitHub   *gh.Clients // nil: local mode: the activities that need GitHub fail non-retryably
	Pools    *pools.Config
	// Temporal and TaskQueue serve AcquireRunner: it starts the pool's
	// workflow on TaskQueue (the workers' queue, workflows.TaskQueue) if it
	// is not running.
	Temporal  client.Client
	TaskQueue string
	Logger    *slog.Logger // default slog.Default()
}

func (a *Runners) logger() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

func (a *Runners) pool(name string) (*pools.Pool, error) {
	var p *pools.Pool
	if a.Pools != nil {
		p = a.Pools.Get(name)
	}
	if p == nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("unknown runner pool %q", name), ErrTypeUnknownPool, nil)
	}
	return p, nil
}

// poolAsCreated is the configuration a machine of pool name was created
// with: cfg when the workflow sent it, else the worker's.
func (a *Runners) poolAsCreated(name string, cfg *pools.Pool) (*pools.Pool, error) {
	if cfg == nil {
		return a.pool(name)
	}
	if cfg.Name != name {
		return nil, invalid("pool %q: the configuration sent is pool %q's", name, cfg.Name)
	}
	return cfg, nil
}

// api is the GitHub API for installation id (0: the configured default),
// or the local-mode refusal.
func (a *Runners) api(installationID int64) (*gh.API, error) {
	if a.GitHub == nil {
		return nil, temporal.NewNonRetryableApplicationError(errNoGitHub, ErrTypeGitHubNotConfigured, nil)
	}
	api, err := a.GitHub.API(installationID)
	if err != nil {
		return nil, classifyGitHub(err)
	}
	return api, nil
}

func (a *Runners) heartbeat() *Machines {
	if a.Machines != nil {
		return a.Machines
	}
	return &Machines{}
}

func invalid(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), ErrTypeInvalidArgument, nil)
}

// runnerNamePattern keeps runner names usable as file names ($HOME/.drydock/runner-<name>.log).
var runnerNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// checkRunnerName refuses a runner name runnerNamePattern does not match.
func checkRunnerName(name string) error {
	if !runnerNamePattern.MatchString(name) {
		return invalid("runner name %q: want letters, digits, '.', '_' or '-'", name)
	}
	return nil
}

// runnerVersionPattern: actions/runner versions (2.321.0); it names files too.
var runnerVersionPattern = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z._-]*$`)

func (a *Runners) machine(machineID string) error {
	if a.Machines == nil || a.Machines.Client == nil {
		return invalid("runner activities need a Dedalus client (Runners.Machines)")
	}
	if machineID == "" {
		return invalid("runner activity needs a machine ID")
	}
	return nil
}

// run runs cmd to completion like Machines.RunCommand, with an idempotency
// key of its own (the activity's key plus suffix), so one activity can run
// several commands and a retry re-attaches to each of them.
func (a *Runners) run(ctx context.Context, cmd Command, suffix string) (CommandResult, error) {
	return a.Machines.runCommand(ctx, cmd, suffix)
}

// JITConfigEnv is the environment variable the JIT config reaches the
// runner command in: actions/runner's environment input for --jitconfig.
const JITConfigEnv = "ACTIONS_RUNNER_INPUT_JITCONFIG"

// registrationTokenEnv is config.sh's environment input for --token.
const registrationTokenEnv = "ACTIONS_RUNNER_INPUT_TOKEN"

// removedJITConfigEnv is where Drydock used to put the JIT config (a pool's
// runner_command passed it as --jitconfig "$DRYDOCK_JIT_CONFIG": in the
// runner's argv, and inherited by every job step). It is no longer set.
const removedJITConfigEnv = "DRYDOCK_JIT_CONFIG"

// CheckRunnerCommand refuses a pool whose runner_command still uses
// DRYDOCK_JIT_CONFIG, which Drydock no longer sets: such a runner would
// start with an empty config.
func CheckRunnerCommand(p *pools.Pool) error {
	for _, a := range p.RunnerCommand {
		if strings.Contains(a, removedJITConfigEnv) {
			return fmt.Errorf("pool %s: runner_command uses $%s, which Drydock no longer sets: the JIT config is in %s, "+
				"which actions/runner's run.sh reads by itself (drop the --jitconfig argument) and removes from the environment its jobs inherit",
				p.Name, removedJITConfigEnv, JITConfigEnv)
		}
	}
	return nil
}

// CheckRunnerCommands is CheckRunnerCommand for every pool of c.
func CheckRunnerCommands(c *pools.Config) error {
	if c == nil {
		return nil
	}
	for i := range c.Pools {
		if err := CheckRunnerCommand(&c.Pools[i]); err != nil {
			return err
		}
	}
	return nil
}

// cacheList is the pool's declared caches for cleanScript: one directory
// a line, relative to the runner's home.
func cacheList(p *pools.Pool) (string, error) {
	rels := make([]string, 0, len(p.Caches))
	for _, c := range p.Caches {
		rel, err := pools.CacheDir(c)
		if err != nil {
			return "", invalid("pool %s: caches: %v", p.Name, err)
		}
		rels = append(rels, rel)
	}
	// Outer directories first: a cache inside another declared one is then
	// kept with it, not moved away on its own (which lost the outer one).
	slices.SortStableFunc(rels, func(a, b string) int { return strings.Count(a, "/") - strings.Count(b, "/") })
	return strings.Join(rels, "\n"), nil
}

func runnerVersion(p *pools.Pool) (string, error) {
	v := p.RunnerVersion
	if v == "" {
		v = pools.DefaultRunnerVersion
	}
	if !runnerVersionPattern.MatchString(v) {
		return "", invalid("pool %s: runner version %q is not a version", p.Name, v)
	}
	return v, nil
}

func stepTimeout(st previewspec.Step) time.Duration {
	if st.Timeout > 0 {
		return time.Duration(st.Timeout)
	}
	return previewspec.DefaultStepTimeout
}

// PoolConfig returns a pool's configuration as the worker has it now
// (RUNNER_POOLS). RunnerPool reads it through a local activity at each run
// start and on SignalReconfigure, so a changed configuration takes effect
// for the whole pool (machine size, mode, bounds) and replays from history.
func (a *Runners) PoolConfig(_ context.Context, name string) (pools.Pool, error) {
	p, err := a.pool(name)
	if err != nil {
		return pools.Pool{}, err
	}
	return *p, nil
}
