package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/previewspec"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
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

// SetupMachineInput names a freshly provisioned pool machine.
type SetupMachineInput struct {
	Pool, MachineID string
	// Config is the pool configuration the machine was created with (its
	// size came from it): setup follows it, not the worker's configuration,
	// so a RUNNER_POOLS change during a provisioning never gives a machine
	// one configuration's size and another's setup. Nil (workflows started
	// before it was added): the worker's configuration of Pool.
	Config *pools.Pool `json:",omitempty"`
}

// SetupMachine prepares a pool machine, as root: it runs the pool's Setup
// steps, creates the unprivileged RunnerUser (unless a setup step did),
// runs its Install step (default: download actions/runner RunnerVersion
// into root's $HOME/actions-runner, the pristine install every runner gets
// a fresh copy of), with DRYDOCK_POOL and DRYDOCK_RUNNER_VERSION set, makes
// the install root's and read-only to others, and then writes $HOME/.drydock/runner-<version>.installed. A machine that
// has the marker is done: a later call runs nothing (changing RunnerVersion
// therefore re-runs setup and install). A failing step is a non-retryable
// CommandFailed error carrying its output tail. Each command has its own
// idempotency key, so a retry after a worker crash re-attaches to the
// commands already started instead of running them twice.
func (a *Runners) SetupMachine(ctx context.Context, in SetupMachineInput) error {
	p, err := a.poolAsCreated(in.Pool, in.Config)
	if err != nil {
		return err
	}
	if err := a.machine(in.MachineID); err != nil {
		return err
	}
	version, err := runnerVersion(p)
	if err != nil {
		return err
	}
	env := map[string]string{"DRYDOCK_POOL": p.Name, "DRYDOCK_RUNNER_VERSION": version, "DRYDOCK_RUNNER_USER": RunnerUser}
	log := a.logger().With("pool", p.Name, "machine_id", in.MachineID, "runner_version", version)

	check, err := a.run(ctx, Command{
		MachineID: in.MachineID, Name: "check runner install", Argv: []string{"sh", "-c", checkInstallScript}, Env: env, Timeout: time.Minute,
	}, "setup:check")
	if err != nil {
		return err
	}
	if strings.TrimSpace(check.StdoutTail) == "installed" {
		log.InfoContext(ctx, "runner machine already set up")
		return nil
	}
	for i, st := range p.Setup {
		name := st.Name
		if name == "" {
			name = "setup step " + strconv.Itoa(i+1)
		}
		if _, err := a.run(ctx, Command{
			MachineID: in.MachineID, Name: "setup: " + name, Argv: st.Argv(), Env: env, Timeout: stepTimeout(st),
		}, "setup:step:"+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	if _, err := a.run(ctx, Command{
		MachineID: in.MachineID, Name: "create the runner user " + RunnerUser, Argv: []string{"sh", "-c", createRunnerUserScript}, Env: env, Timeout: time.Minute,
	}, "setup:user"); err != nil {
		return err
	}
	install := previewspec.Step{Name: "install actions/runner " + version, Run: defaultInstallScript, Timeout: previewspec.Duration(10 * time.Minute)}
	if p.Install != nil {
		install = *p.Install
		if install.Name == "" {
			install.Name = "install runner"
		}
	}
	if _, err := a.run(ctx, Command{
		MachineID: in.MachineID, Name: install.Name, Argv: install.Argv(), Env: env, Timeout: stepTimeout(install),
	}, "setup:install"); err != nil {
		return err
	}
	if _, err := a.run(ctx, Command{
		MachineID: in.MachineID, Name: "mark runner installed", Argv: []string{"sh", "-c", markInstalledScript}, Env: env, Timeout: time.Minute,
	}, "setup:mark"); err != nil {
		return err
	}
	log.InfoContext(ctx, "runner machine set up", "setup_steps", len(p.Setup))
	return nil
}

// RegisterInput names the persistent runner to register on a machine.
type RegisterInput struct {
	Pool, MachineID, RunnerName string
	// Config is the pool configuration the machine was created with (see
	// SetupMachineInput.Config).
	Config *pools.Pool `json:",omitempty"`
}

// RegisterPersistent registers a persistent runner (pool mode persistent):
// it asks GitHub for a registration token, runs config.sh --unattended
// --replace once as RunnerUser, in a copy of the install in its home (a
// machine whose runner is configured skips it), and installs the runner's
// systemd service for RunnerUser (svc.sh install runner) and starts it, so
// the runner resumes polling on every wake. The token reaches config.sh as its
// environment input ACTIONS_RUNNER_INPUT_TOKEN, through the environment of a
// constant script: it is in no argv (config.sh's included), log, error or
// result, and the script unsets it before it starts the service. Each
// attempt runs its own execution (a fresh token means a different request);
// the script serializes attempts with flock. It also installs the
// cleanup after every job (persistentHookScript, the runner's
// job-completed hook), which keeps only the pool's caches.
func (a *Runners) RegisterPersistent(ctx context.Context, in RegisterInput) error {
	p, err := a.poolAsCreated(in.Pool, in.Config)
	if err != nil {
		return err
	}
	if err := a.machine(in.MachineID); err != nil {
		return err
	}
	if !runnerNamePattern.MatchString(in.RunnerName) {
		return invalid("runner name %q: want letters, digits, '.', '_' or '-'", in.RunnerName)
	}
	caches, err := cacheList(p)
	if err != nil {
		return err
	}
	api, err := a.api(0)
	if err != nil {
		return err
	}
	url, err := a.GitHub.RunnerURL(p.Scope)
	if err != nil {
		return classifyGitHub(err)
	}
	token, _, err := api.RegistrationToken(ctx, p.Scope)
	if err != nil {
		return classifyGitHub(err)
	}
	attempt := int32(1)
	if activity.IsActivity(ctx) {
		attempt = activity.GetInfo(ctx).Attempt
	}
	if _, err := a.run(ctx, Command{
		MachineID: in.MachineID, Name: "register runner " + in.RunnerName, Argv: []string{"sh", "-c", registerScript, "drydock-register", cleanScript},
		Env: map[string]string{
			"DRYDOCK_POOL": p.Name, "DRYDOCK_RUNNER_NAME": in.RunnerName, "DRYDOCK_RUNNER_URL": url,
			"DRYDOCK_RUNNER_LABELS": strings.Join(p.Labels, ","), registrationTokenEnv: token,
			"DRYDOCK_RUNNER_USER": RunnerUser, "DRYDOCK_CACHES": caches, "DRYDOCK_HOOK_SCRIPT": persistentHookScript,
		},
		Timeout: 5 * time.Minute,
	}, fmt.Sprintf("register:%d", attempt)); err != nil {
		return err
	}
	a.logger().InfoContext(ctx, "persistent runner registered", "pool", p.Name, "machine_id", in.MachineID, "runner", in.RunnerName)
	return nil
}

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
	p, err := a.pool(in.Pool)
	if err != nil {
		return err
	}
	if err := CheckRunnerCommand(p); err != nil {
		return invalid("%v", err)
	}
	if err := a.machine(in.MachineID); err != nil {
		return err
	}
	if !runnerNamePattern.MatchString(in.RunnerName) {
		return invalid("runner name %q: want letters, digits, '.', '_' or '-'", in.RunnerName)
	}
	api, err := a.api(in.InstallationID)
	if err != nil {
		return err
	}
	scope := p.RunnerScope(in.Repo)
	if p.RegistersAtRepositories() && scope == p.Scope {
		// At the organization, GitHub could hand the runner another
		// repository's job: never fall back to it.
		return invalid("pool %s registers its runners at their job's repository, and job %d's repository %q is not one of %s",
			p.Name, in.JobID, in.Repo, p.Scope.Org)
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
				JITConfigEnv: config, "DRYDOCK_RUNNER_NAME": in.RunnerName, "DRYDOCK_POOL": p.Name,
				"DRYDOCK_CACHES": caches,
				"DRYDOCK_JOB_ID": strconv.FormatInt(in.JobID, 10), "DRYDOCK_RUNNER_USER": RunnerUser,
				"DRYDOCK_AFTER_RUNNER_SCRIPT": afterRunnerScript,
			},
			Timeout: time.Minute,
		}, "runner-start:"+strconv.FormatInt(runnerID, 10)) // a new registration is a new command
		if err != nil {
			return err
		}
		if strings.Contains(res.StdoutTail, runnerAlreadyStarted) {
			// An earlier attempt started this runner and then failed (its
			// answer was lost), and the runner has already run a job and
			// deregistered, freeing the name: the registration just made
			// is not needed, and nothing was started.
			if err := api.RemoveRunner(ctx, scope, runnerID); err != nil && !errors.Is(err, gh.ErrRunnerNotFound) {
				log.WarnContext(ctx, "could not remove the unneeded registration; the reconciler will", "runner_id", runnerID, "error", err)
			}
			log.InfoContext(ctx, "JIT runner already started on the machine: a previous attempt started it", "execution_id", res.ExecutionID)
			return nil
		}
		log.InfoContext(ctx, "JIT runner started", "runner_id", runnerID, "execution_id", res.ExecutionID)
		return nil
	}
	return temporal.NewApplicationError(fmt.Sprintf("runner name %s is still taken in %s after removing its stale registration %d times", in.RunnerName, p.Name, tries), ErrTypeGitHubUnavailable)
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

// RemoveRunnerInput names a runner of a pool to deregister.
type RemoveRunnerInput struct {
	Pool, RunnerName string
	// Repo is the repository of the job the runner was started for
	// (StartRunnerInput.Repo), which decides where it registered.
	Repo string `json:",omitempty"`
	// InstallationID is the GitHub App installation the runner was
	// registered with (StartRunnerInput.InstallationID; 0: the default).
	InstallationID int64 `json:",omitempty"`
}

// RemoveRunnerResult says what became of the runner.
type RemoveRunnerResult struct {
	Removed  bool // deregistered now
	Busy     bool // running a job: GitHub refused; try again after the job
	NotFound bool // no runner of that name (already gone)
}

// RemoveRunner deregisters the pool's runner named RunnerName from GitHub.
func (a *Runners) RemoveRunner(ctx context.Context, in RemoveRunnerInput) (RemoveRunnerResult, error) {
	p, err := a.pool(in.Pool)
	if err != nil {
		return RemoveRunnerResult{}, err
	}
	if in.RunnerName == "" {
		return RemoveRunnerResult{}, invalid("remove runner: empty runner name")
	}
	api, err := a.api(in.InstallationID)
	if err != nil {
		return RemoveRunnerResult{}, err
	}
	scope := p.RunnerScope(in.Repo)
	r, found, err := api.RunnerByName(ctx, scope, in.RunnerName)
	if err != nil {
		return RemoveRunnerResult{}, classifyGitHub(err)
	}
	if !found {
		return RemoveRunnerResult{NotFound: true}, nil
	}
	err = api.RemoveRunner(ctx, scope, r.ID)
	switch {
	case errors.Is(err, gh.ErrRunnerBusy):
		return RemoveRunnerResult{Busy: true}, nil
	case errors.Is(err, gh.ErrRunnerNotFound):
		return RemoveRunnerResult{NotFound: true}, nil
	case err != nil:
		return RemoveRunnerResult{}, classifyGitHub(err)
	}
	a.logger().InfoContext(ctx, "runner removed", "pool", p.Name, "runner", in.RunnerName, "runner_id", r.ID)
	return RemoveRunnerResult{Removed: true}, nil
}

// JobStatusInput names a GitHub Actions job.
type JobStatusInput struct {
	Owner, Repo    string
	JobID          int64
	InstallationID int64 // 0: the configured default installation
}

// JobStatusResult is a job as GitHub reports it now.
type JobStatusResult struct {
	Status     string // queued, in_progress, completed, waiting...
	Conclusion string // once completed: success, failure, cancelled...
	RunnerName string // the runner that took it, "" before
}

// JobStatus reads a job from GitHub (to check on a job whose runner has not
// picked it up, or whose webhook was missed).
func (a *Runners) JobStatus(ctx context.Context, in JobStatusInput) (JobStatusResult, error) {
	api, err := a.api(in.InstallationID)
	if err != nil {
		return JobStatusResult{}, err
	}
	status, conclusion, runner, err := api.WorkflowJob(ctx, in.Owner, in.Repo, in.JobID)
	if err != nil {
		return JobStatusResult{}, classifyGitHub(err)
	}
	return JobStatusResult{Status: status, Conclusion: conclusion, RunnerName: runner}, nil
}

// GitHubRunnerDirectory is GitHub as the Reconciler's RunnerDirectory, over
// the default installation; nil (no directory) in local mode. Removing a
// runner that is already gone succeeds.
func GitHubRunnerDirectory(c *gh.Clients) RunnerDirectory {
	if c == nil {
		return nil
	}
	return githubDirectory{c}
}

type githubDirectory struct{ c *gh.Clients }

func (d githubDirectory) ListRunners(ctx context.Context, scope pools.Scope) ([]RegisteredRunner, error) {
	api, err := d.c.API(0)
	if err != nil {
		return nil, err
	}
	rs, err := api.ListRunners(ctx, scope)
	if err != nil {
		return nil, err
	}
	out := make([]RegisteredRunner, 0, len(rs))
	for _, r := range rs {
		out = append(out, RegisteredRunner{ID: r.ID, Name: r.Name, Online: r.Online(), Busy: r.Busy})
	}
	return out, nil
}

func (d githubDirectory) RemoveRunner(ctx context.Context, scope pools.Scope, id int64) error {
	api, err := d.c.API(0)
	if err != nil {
		return err
	}
	if err := api.RemoveRunner(ctx, scope, id); err != nil && !errors.Is(err, gh.ErrRunnerNotFound) {
		return err
	}
	return nil
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

// LeaseHolder is a job attempt holding a pool's queue place or machine.
type LeaseHolder struct {
	JobID   int64
	Attempt int
	// RunnerName is the runner on the leased machine (the lease's JIT
	// runner, or the machine's persistent runner); "" for a queue place.
	// Attempt 0: not a lease but the job a machine's persistent runner
	// runs (RunnerName), which stops counting once gone.
	RunnerName string `json:",omitempty"`
	// Repo is the repository of the leased job (owner/name), which decides
	// where a JIT runner registered (pools.Pool.RunnerScope).
	Repo string `json:",omitempty"`
}

// LeaseCheckInput lists what a pool holds for others: job attempts with a
// queue place or a lease, and provisioning children it carried over
// continue-as-new (workflow IDs).
type LeaseCheckInput struct {
	Pool       string
	Holders    []LeaseHolder
	Provisions []string `json:",omitempty"`
}

// LeaseCheckResult lists the holders that are gone and the provisioning
// children that are no longer running.
type LeaseCheckResult struct {
	Gone             []LeaseHolder `json:",omitempty"`
	ProvisionsClosed []string      `json:",omitempty"`
}

// CheckLeaseHolders tells a pool which of its queue places and leases
// nobody holds any more: the job's RunnerJob workflow (runnerapi.
// JobWorkflowID, latest run) is closed or unknown (terminated, timed out,
// failed), and for a lease, the machine's runner is not running a job
// (with GitHub access; a runner GitHub reports busy keeps its machine
// leased, and so does any doubt: a GitHub error). It also reports which
// provisioning children have closed.
func (a *Runners) CheckLeaseHolders(ctx context.Context, in LeaseCheckInput) (LeaseCheckResult, error) {
	p, err := a.pool(in.Pool)
	if err != nil {
		return LeaseCheckResult{}, err
	}
	if a.Temporal == nil {
		return LeaseCheckResult{}, invalid("CheckLeaseHolders needs Runners.Temporal")
	}
	closedCache := map[string]bool{}
	closed := func(id string) (bool, error) {
		if c, ok := closedCache[id]; ok {
			return c, nil
		}
		desc, err := a.Temporal.DescribeWorkflowExecution(ctx, id, "")
		var nf *serviceerror.NotFound
		switch {
		case errors.As(err, &nf):
			closedCache[id] = true
		case err != nil:
			return false, fmt.Errorf("describe %s: %w", id, err)
		default:
			closedCache[id] = desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
		}
		return closedCache[id], nil
	}
	var out LeaseCheckResult
	for _, h := range in.Holders {
		c, err := closed(runnerapi.JobWorkflowID(h.JobID))
		if err != nil {
			return LeaseCheckResult{}, err
		}
		if !c || (h.RunnerName != "" && a.runnerBusy(ctx, p.RunnerScope(h.Repo), h.RunnerName)) {
			continue
		}
		out.Gone = append(out.Gone, h)
	}
	for _, id := range in.Provisions {
		c, err := closed(id)
		if err != nil {
			return LeaseCheckResult{}, err
		}
		if c {
			out.ProvisionsClosed = append(out.ProvisionsClosed, id)
		}
	}
	if len(out.Gone)+len(out.ProvisionsClosed) > 0 {
		a.logger().InfoContext(ctx, "runner pool holders gone", "pool", p.Name, "gone", len(out.Gone), "provisions_closed", len(out.ProvisionsClosed))
	}
	return out, nil
}

// runnerBusy reports whether GitHub says the runner is running a job; any
// doubt (no GitHub, an error) counts as busy when GitHub is configured,
// as idle in local mode (no runner can run anything there).
func (a *Runners) runnerBusy(ctx context.Context, scope pools.Scope, name string) bool {
	if a.GitHub == nil {
		return false
	}
	api, err := a.GitHub.API(0)
	if err != nil {
		return true
	}
	r, found, err := api.RunnerByName(ctx, scope, name)
	if err != nil {
		return true
	}
	return found && r.Busy
}
