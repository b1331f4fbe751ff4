// Package pools is the configuration of runner pools: which GitHub Actions
// jobs a pool takes (by labels), where its runners register (organization or
// repository), the machines they run on and how many, and how runners are
// registered on them.
package pools

import (
	"slices"
	"strings"
	"time"

	"github.com/drydock-dev/drydock/internal/machinespec"
	"github.com/drydock-dev/drydock/internal/previewspec"
)

// Registration modes.
const (
	// ModeJIT (default): every job gets a fresh single-use runner registered
	// with a just-in-time config on the woken machine; the disk and caches stay.
	ModeJIT = "jit"
	// ModePersistent: a runner registered once at provision time as a
	// systemd service, resumed by every wake; a weekly keepalive wakes it.
	ModePersistent = "persistent"
)

// Isolation modes (Pool.Isolation): which jobs a machine may run after it
// ran one.
const (
	// IsolationPerRepo (default for jit pools): a machine that ran a job of
	// a repository only ever runs that repository's jobs, until it is
	// deleted. Leasing prefers a free machine that last ran the job's
	// repository (hot caches), then a never-used one, and never crosses
	// repositories: at max_machines, the longest-idle free machine of
	// another repository is deleted to make room.
	IsolationPerRepo = "per-repo"
	// IsolationShared: any free machine runs any job the pool takes (the
	// behaviour before isolation modes; the only one for persistent pools,
	// whose runner GitHub picks). A job can leave processes and files for
	// the next job of another repository and read what the earlier one
	// left: for a single trusted repository or organization only.
	IsolationShared = "shared"
	// IsolationFresh: a never-used machine per job, deleted after it (no
	// reuse, no warm caches): for public repositories with outside
	// contributors.
	IsolationFresh = "fresh"
)

// Scope kinds.
const (
	ScopeOrg  = "org"
	ScopeRepo = "repo"
)

// Pool is one runner pool.
type Pool struct {
	Name string `json:"name" yaml:"name"`
	// Labels the pool's runners carry: the pool takes every job whose
	// runs-on labels are all among them. GitHub gives every self-hosted job
	// the label self-hosted, so pools should list it (not required).
	Labels []string `json:"labels" yaml:"labels"`
	// Scope is where runners register: an organization, or one repository.
	Scope Scope `json:"scope" yaml:"scope"`
	// Repositories (owner/name) whose jobs the pool takes; ["*"]: every
	// repository the scope reaches. With Owners, the pool takes a job when
	// either lists its repository. An organization pool must list one or
	// the other; a repository pool serves its scope.repo (and may only list
	// it). A job from anything else is acknowledged and never leases a
	// machine (reason code pool_scope).
	Repositories []string `json:"repositories,omitempty" yaml:"repositories"`
	// Owners (organization logins) every repository of which the pool takes.
	Owners []string `json:"owners,omitempty" yaml:"owners"`
	// AllowPublic lets the pool take jobs of public repositories (anyone
	// may open a pull request whose workflow runs on the machine). Default
	// false: they are acknowledged and refused (reason code public_repository).
	AllowPublic bool `json:"allow_public,omitempty" yaml:"allow_public"`
	// AllowDefaultGroup lets an organization pool register its runners in
	// the Default runner group (1), which every repository of the
	// organization may use. Default false: an organization pool names its
	// own runner_group_id.
	AllowDefaultGroup bool    `json:"allow_default_group,omitempty" yaml:"allow_default_group"`
	Machine           Machine `json:"machine" yaml:"machine"`
	// MinIdle machines are kept provisioned (asleep) for the next jobs.
	MinIdle     int `json:"min_idle" yaml:"min_idle"`
	MaxMachines int `json:"max_machines" yaml:"max_machines"`
	// RunnerVersion of actions/runner installed at provision time.
	RunnerVersion string `json:"runner_version" yaml:"runner_version"`
	// Setup runs once per machine at provision time (toolchains, caches).
	Setup []previewspec.Step `json:"setup,omitempty" yaml:"setup"`
	// Install installs the runner; default downloads actions/runner RunnerVersion
	// into $HOME/actions-runner. Env DRYDOCK_RUNNER_VERSION is set.
	Install *previewspec.Step `json:"install,omitempty" yaml:"install"`
	// RunnerCommand starts a JIT runner (argv); ACTIONS_RUNNER_INPUT_JITCONFIG
	// holds the encoded config (actions/runner reads it). Default: $HOME/actions-runner/run.sh.
	RunnerCommand []string `json:"runner_command,omitempty" yaml:"runner_command"`
	Mode          string   `json:"mode" yaml:"mode"`
	// Isolation is which jobs a machine may run after it ran one:
	// IsolationPerRepo (default for jit), IsolationShared (default, and the
	// only one, for persistent) or IsolationFresh.
	Isolation string `json:"isolation,omitempty" yaml:"isolation"`
	// Caches are the directories of the runner's home ("~/.cargo/registry",
	// "~/.npm") that a machine keeps from one job to the next: after each
	// JIT job every other file of the home, the work directory and the
	// runner's temporary directory are wiped (and every process the job
	// left is gone: the runner runs in its own PID namespace). A cache is
	// shared by every job the machine runs: what one job writes there the
	// next one reads.
	Caches []string `json:"caches,omitempty" yaml:"caches"`
	// RunnerGroupID for JIT configs (default 1, the Default group, which an
	// organization pool may use only with AllowDefaultGroup).
	RunnerGroupID int64 `json:"runner_group_id" yaml:"runner_group_id"`
	// PickupTimeout: a job not in progress this long after its runner started
	// is checked with GitHub and, if still queued, tried on another machine.
	PickupTimeout previewspec.Duration `json:"pickup_timeout" yaml:"pickup_timeout"`
	// MaxAttempts bounds the machines one job is tried on.
	MaxAttempts int `json:"max_attempts" yaml:"max_attempts"`
	// Prewarm wakes idle machines ahead of known peaks (Temporal Schedules).
	Prewarm []Prewarm `json:"prewarm,omitempty" yaml:"prewarm"`
	// LeaseCheckEvery is how often the pool's workflow checks, while it
	// holds queue places or leases, that their jobs' RunnerJob workflows
	// still run (those of terminated or timed-out jobs expire). At least
	// MinLeaseCheckEvery; default DefaultLeaseCheckEvery. (omitempty: a
	// configuration recorded without it keeps its fingerprint.)
	LeaseCheckEvery previewspec.Duration `json:"lease_check_every,omitempty" yaml:"lease_check_every"`
}

// Scope says where a pool's runners register.
type Scope struct {
	Kind string `json:"kind" yaml:"kind"` // org or repo
	Org  string `json:"org,omitempty" yaml:"org"`
	Repo string `json:"repo,omitempty" yaml:"repo"` // owner/repo
}

// Machine is the size and idle window of a pool's machines.
type Machine = machinespec.Machine

// Prewarm is one pre-warm schedule: wake Count idle machines at Cron (UTC).
type Prewarm struct {
	Cron  string `json:"cron" yaml:"cron"`
	Count int    `json:"count" yaml:"count"`
}

// Defaults of a pool's optional fields (machine size: the documented
// Dedalus runner recipe).
const (
	DefaultVCPU          = 4
	DefaultMemoryMiB     = 8192
	DefaultStorageGiB    = 40
	DefaultAutosleep     = "2m"
	DefaultMaxMachines   = 10
	DefaultRunnerVersion = "2.321.0"
	DefaultPickupTimeout = 2 * time.Minute
	DefaultMaxAttempts   = 3
	// DefaultLeaseCheckEvery is lease_check_every's default.
	DefaultLeaseCheckEvery = 5 * time.Minute
	// MinLeaseCheckEvery bounds lease_check_every: each check describes
	// every holder's workflow (and may ask GitHub about runners).
	MinLeaseCheckEvery = 5 * time.Second
)

// LeaseCheckInterval is the pool's lease liveness interval: its
// lease_check_every, or the default when unset (a configuration from an
// older worker).
func (p *Pool) LeaseCheckInterval() time.Duration {
	if d := p.LeaseCheckEvery.D(); d > 0 {
		return d
	}
	return DefaultLeaseCheckEvery
}

// Matches reports whether a job with these labels belongs to the pool: the
// pool's labels contain every one of the job's (case-insensitively, as
// GitHub compares them).
func (p *Pool) Matches(jobLabels []string) bool {
	if len(jobLabels) == 0 {
		return false
	}
	for _, l := range jobLabels {
		if !slices.ContainsFunc(p.Labels, func(pl string) bool { return strings.EqualFold(pl, l) }) {
			return false
		}
	}
	return true
}

// Serves reports whether the pool takes jobs of repository owner/repo:
// its Repositories list it (or "*"), or its Owners list owner; a
// repository pool with neither serves its scope's repository. GitHub
// logins and repository names compare case-insensitively.
func (p *Pool) Serves(owner, repo string) bool {
	if owner == "" || repo == "" {
		return false
	}
	full := owner + "/" + repo
	if len(p.Repositories) == 0 && len(p.Owners) == 0 {
		return p.Scope.Kind == ScopeRepo && strings.EqualFold(p.Scope.Repo, full)
	}
	for _, r := range p.Repositories {
		if r == AnyRepository || strings.EqualFold(r, full) {
			// The scope still bounds it: runners registered in one
			// organization never take another's jobs.
			return p.inScope(owner, full)
		}
	}
	for _, o := range p.Owners {
		if strings.EqualFold(o, owner) {
			return p.inScope(owner, full)
		}
	}
	return false
}

func (p *Pool) inScope(owner, full string) bool {
	switch p.Scope.Kind {
	case ScopeOrg:
		return strings.EqualFold(p.Scope.Org, owner)
	case ScopeRepo:
		return strings.EqualFold(p.Scope.Repo, full)
	}
	return false
}

// AnyRepository in Repositories: every repository the pool's scope reaches.
const AnyRepository = "*"

// Config is every pool.
type Config struct {
	Pools []Pool `json:"pools" yaml:"pools"`
}

// Match returns the first pool (in configuration order) that takes a job
// with these labels, or nil (e.g. ubuntu-latest: GitHub-hosted).
func (c *Config) Match(jobLabels []string) *Pool {
	for i := range c.Pools {
		if c.Pools[i].Matches(jobLabels) {
			return &c.Pools[i]
		}
	}
	return nil
}

// Get returns the pool named name, or nil.
func (c *Config) Get(name string) *Pool {
	for i := range c.Pools {
		if c.Pools[i].Name == name {
			return &c.Pools[i]
		}
	}
	return nil
}

// IsolationMode is the pool's isolation with the default applied (a
// configuration recorded before isolation modes has none).
func (p Pool) IsolationMode() string {
	switch {
	case p.Isolation != "":
		return p.Isolation
	case p.Mode == ModePersistent:
		return IsolationShared
	default:
		return IsolationPerRepo
	}
}

// RunnerScope is where a JIT runner for a job of repository repo
// (owner/name) registers. An organization runner takes whichever queued job
// of its runner group's repositories GitHub hands it, so a per-repo or
// fresh jit pool at organization scope registers each runner at its job's
// repository instead: GitHub then hands it that repository's jobs only, and
// a machine never runs another repository's job. Every other pool (shared,
// persistent, repository scope), or an unknown repo, registers at the
// pool's own scope.
func (p Pool) RunnerScope(repo string) Scope {
	if !p.RegistersAtRepositories() {
		return p.Scope
	}
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" || !strings.EqualFold(owner, p.Scope.Org) {
		return p.Scope
	}
	return Scope{Kind: ScopeRepo, Repo: repo}
}

// RegistersAtRepositories reports whether the pool registers its runners
// at their jobs' repositories rather than at its organization scope (see
// RunnerScope): a jit pool at organization scope that is not shared. Its
// GitHub credential needs to manage the runners of those repositories.
func (p Pool) RegistersAtRepositories() bool {
	return p.Mode != ModePersistent && p.Scope.Kind == ScopeOrg && p.IsolationMode() != IsolationShared
}

// RunnerGroup is the runner group a runner registered at scope joins: the
// pool's RunnerGroupID at the pool's own scope; a repository's runners
// have only the Default group.
func (p Pool) RunnerGroup(scope Scope) int64 {
	if scope != p.Scope {
		return DefaultRunnerGroupID
	}
	return p.RunnerGroupID
}
