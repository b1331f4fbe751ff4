package pools

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/previewspec"
)

// Environment variables the worker, webhook server and starter read the
// pools from (LoadFrom). Errors name them.
const (
	EnvFile   = "RUNNER_POOLS_FILE"
	EnvInline = "RUNNER_POOLS"
)

// MaxSize bounds a pools configuration.
const MaxSize = 1 << 20

// DefaultRunnerGroupID is the Default runner group of an organization or repository.
const DefaultRunnerGroupID = 1

// MaxAttemptsLimit bounds max_attempts: every attempt leases (and may
// provision) another machine.
const MaxAttemptsLimit = 10

// Load reads a pools file (YAML or JSON) and returns it with defaults
// applied and validated.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("runner pools: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("runner pools: read %s: %w", path, err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// LoadFrom loads the pools from RUNNER_POOLS_FILE (file) or RUNNER_POOLS
// (inline, JSON or YAML). Neither set is an empty configuration (no pools:
// every workflow_job is left to GitHub-hosted runners); both set is an error.
// Errors name the variable at fault.
func LoadFrom(file, inline string) (*Config, error) {
	file, inline = strings.TrimSpace(file), strings.TrimSpace(inline)
	switch {
	case file != "" && inline != "":
		return nil, fmt.Errorf("configuration: set %s or %s, not both", EnvFile, EnvInline)
	case file != "":
		c, err := Load(file)
		if err != nil {
			return nil, fmt.Errorf("configuration: %s=%s: %w", EnvFile, file, err)
		}
		return c, nil
	case inline != "":
		c, err := Parse([]byte(inline))
		if err != nil {
			return nil, fmt.Errorf("configuration: %s: %w", EnvInline, err)
		}
		return c, nil
	}
	return &Config{}, nil
}

// Parse reads a pools configuration in YAML or JSON (JSON is YAML): either
// an object {"pools": [...]} or the list of pools itself. Unknown fields are
// errors; defaults are filled in and every problem is reported at once
// (*InvalidError).
func Parse(data []byte) (*Config, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("runner pools configuration is larger than %d bytes", MaxSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("runner pools configuration is empty (write {\"pools\": []} for no pools)")
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("runner pools: %w", err)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var err error
	if len(root.Content) == 1 && root.Content[0].Kind == yaml.SequenceNode {
		err = dec.Decode(&c.Pools)
	} else {
		err = dec.Decode(&c)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("runner pools: %w", err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// ApplyDefaults fills every pool's optional fields.
func (c *Config) ApplyDefaults() {
	for i := range c.Pools {
		c.Pools[i].ApplyDefaults()
	}
}

// ApplyDefaults fills the pool's optional fields. A scope with only org or
// only repo set gets the matching kind. Install and RunnerCommand stay empty:
// the runner activities own those defaults.
func (p *Pool) ApplyDefaults() {
	if p.Scope.Kind == "" {
		switch {
		case p.Scope.Org != "" && p.Scope.Repo == "":
			p.Scope.Kind = ScopeOrg
		case p.Scope.Repo != "" && p.Scope.Org == "":
			p.Scope.Kind = ScopeRepo
		}
	}
	if p.Machine.VCPU == 0 {
		p.Machine.VCPU = DefaultVCPU
	}
	if p.Machine.MemoryMiB == 0 {
		p.Machine.MemoryMiB = DefaultMemoryMiB
	}
	if p.Machine.StorageGiB == 0 {
		p.Machine.StorageGiB = DefaultStorageGiB
	}
	if p.Machine.Autosleep == "" {
		p.Machine.Autosleep = DefaultAutosleep
	}
	if p.MaxMachines == 0 {
		p.MaxMachines = DefaultMaxMachines
	}
	if p.Mode == "" {
		p.Mode = ModeJIT
	}
	if p.Isolation == "" {
		p.Isolation = IsolationPerRepo
		if p.Mode == ModePersistent {
			p.Isolation = IsolationShared
		}
	}
	if p.RunnerVersion == "" {
		p.RunnerVersion = DefaultRunnerVersion
	}
	if p.RunnerGroupID == 0 {
		p.RunnerGroupID = DefaultRunnerGroupID
	}
	if p.PickupTimeout == 0 {
		p.PickupTimeout = previewspec.Duration(DefaultPickupTimeout)
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.LeaseCheckEvery == 0 {
		p.LeaseCheckEvery = previewspec.Duration(DefaultLeaseCheckEvery)
	}
	for i := range p.Setup {
		if p.Setup[i].Timeout == 0 {
			p.Setup[i].Timeout = previewspec.Duration(previewspec.DefaultStepTimeout)
		}
	}
	if p.Install != nil && p.Install.Timeout == 0 {
		p.Install.Timeout = previewspec.Duration(previewspec.DefaultStepTimeout)
	}
}

var (
	poolName      = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,38}$`)
	githubLogin   = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$`)
	githubRepo    = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}$`)
	runnerVersion = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)
)

// Validate reports every problem of every pool at once (*InvalidError),
// each with its field path (pools[1].machine.vcpu). It expects defaults to
// have been applied.
func (c *Config) Validate() error {
	var errs []error
	seen := map[string]int{}
	for i := range c.Pools {
		p := &c.Pools[i]
		at := fmt.Sprintf("pools[%d]", i)
		errs = append(errs, p.problems(at)...)
		if p.Name != "" {
			if j, dup := seen[p.Name]; dup {
				errs = append(errs, fmt.Errorf("%s.name: %q is also the name of pools[%d]", at, p.Name, j))
			} else {
				seen[p.Name] = i
			}
		}
		// Match takes the first pool whose labels include all of a job's:
		// a later pool whose labels an earlier one includes never gets a job.
		if len(p.Labels) > 0 {
			for j := range i {
				if covers(c.Pools[j].Labels, p.Labels) {
					errs = append(errs, fmt.Errorf("%s.labels: every job these labels take goes to pools[%d] (%s) first, whose labels include them all; list the pool with fewer labels first",
						at, j, c.Pools[j].Name))
					break
				}
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &InvalidError{Problems: errs}
}

// covers reports whether outer contains every label of inner (case-insensitively).
func covers(outer, inner []string) bool {
	for _, l := range inner {
		if !slices.ContainsFunc(outer, func(o string) bool { return strings.EqualFold(strings.TrimSpace(o), strings.TrimSpace(l)) }) {
			return false
		}
	}
	return true
}

// Validate reports every problem of one pool (*InvalidError), with field
// paths relative to the pool.
func (p *Pool) Validate() error {
	if errs := p.problems(""); len(errs) > 0 {
		return &InvalidError{Problems: errs}
	}
	return nil
}

func (p *Pool) problems(at string) []error {
	var errs []error
	field := func(f string) string {
		if at == "" {
			return f
		}
		return at + "." + f
	}
	bad := func(f, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s %s", field(f), fmt.Sprintf(format, args...)))
	}
	if !poolName.MatchString(p.Name) {
		bad("name", "must be 1 to 39 lower-case letters, digits and dashes, starting with a letter or digit (got %q)", p.Name)
	}
	if len(p.Labels) == 0 {
		bad("labels", "must list the runs-on labels the pool takes (e.g. [self-hosted, linux, x64])")
	}
	for j, l := range p.Labels {
		switch {
		case strings.TrimSpace(l) == "":
			bad(fmt.Sprintf("labels[%d]", j), "is empty")
		case len(l) > 100 || strings.ContainsAny(l, ",\n\r\t"):
			bad(fmt.Sprintf("labels[%d]", j), "%q is not a runner label", l)
		}
	}
	switch p.Scope.Kind {
	case ScopeOrg:
		if p.Scope.Org == "" {
			bad("scope.org", "is required for scope kind org")
		} else if !githubLogin.MatchString(p.Scope.Org) {
			bad("scope.org", "%q is not a GitHub organization login", p.Scope.Org)
		}
		if p.Scope.Repo != "" {
			bad("scope.repo", "must be empty for scope kind org")
		}
	case ScopeRepo:
		owner, name, ok := strings.Cut(p.Scope.Repo, "/")
		if p.Scope.Repo == "" {
			bad("scope.repo", "is required for scope kind repo (owner/name)")
		} else if !ok || !githubLogin.MatchString(owner) || !githubRepo.MatchString(name) || name == "." || name == ".." {
			bad("scope.repo", "must be owner/name (got %q)", p.Scope.Repo)
		}
		if p.Scope.Org != "" {
			bad("scope.org", "must be empty for scope kind repo")
		}
	case "":
		if p.Scope.Org != "" || p.Scope.Repo != "" {
			bad("scope.kind", "must say org or repo when both scope.org and scope.repo are set")
		} else {
			bad("scope", "is required: {kind: org, org: NAME} or {kind: repo, repo: OWNER/NAME}")
		}
	default:
		bad("scope.kind", "must be org or repo (got %q)", p.Scope.Kind)
	}
	errs = append(errs, p.scopeProblems(field)...)
	if p.Machine.VCPU <= 0 || p.Machine.VCPU > 64 {
		bad("machine.vcpu", "must be between 0 and 64 (got %v)", p.Machine.VCPU)
	}
	if p.Machine.MemoryMiB < 256 || p.Machine.MemoryMiB > 262144 {
		bad("machine.memory_mib", "must be between 256 and 262144 (got %d)", p.Machine.MemoryMiB)
	}
	if p.Machine.StorageGiB < 1 || p.Machine.StorageGiB > 4096 {
		bad("machine.storage_gib", "must be between 1 and 4096 (got %d)", p.Machine.StorageGiB)
	}
	if _, err := dedalus.ParseAutosleep(p.Machine.Autosleep); err != nil {
		bad("machine.autosleep", "is invalid: %v", err)
	}
	if p.MaxMachines < 1 {
		bad("max_machines", "must be at least 1 (got %d)", p.MaxMachines)
	}
	if p.MinIdle < 0 {
		bad("min_idle", "must not be negative (got %d)", p.MinIdle)
	} else if p.MaxMachines >= 1 && p.MinIdle > p.MaxMachines {
		bad("min_idle", "(%d) must not exceed max_machines (%d)", p.MinIdle, p.MaxMachines)
	}
	if p.Mode != ModeJIT && p.Mode != ModePersistent {
		bad("mode", "must be %s or %s (got %q)", ModeJIT, ModePersistent, p.Mode)
	}
	switch p.Isolation {
	case IsolationPerRepo, IsolationFresh:
		if p.Mode == ModePersistent {
			bad("isolation", "must be %s for persistent pool %s (got %q): GitHub gives a persistent runner any job of the pool, so the pool cannot keep a machine to one repository; use mode %s", IsolationShared, p.Name, p.Isolation, ModeJIT)
		}
	case IsolationShared:
	default:
		bad("isolation", "must be %s, %s or %s (got %q)", IsolationPerRepo, IsolationShared, IsolationFresh, p.Isolation)
	}
	if !runnerVersion.MatchString(p.RunnerVersion) {
		bad("runner_version", "must be an actions/runner version like %s (got %q)", DefaultRunnerVersion, p.RunnerVersion)
	}
	if p.RunnerGroupID < 1 {
		bad("runner_group_id", "must be at least 1 (got %d)", p.RunnerGroupID)
	}
	if d := p.PickupTimeout.D(); d < time.Second || d > time.Hour {
		bad("pickup_timeout", "must be between 1s and 1h (got %s)", d)
	}
	if d := p.LeaseCheckEvery.D(); d < MinLeaseCheckEvery {
		bad("lease_check_every", "must be at least %s (got %s)", MinLeaseCheckEvery, d)
	}
	if p.MaxAttempts < 1 || p.MaxAttempts > MaxAttemptsLimit {
		bad("max_attempts", "must be between 1 and %d (got %d)", MaxAttemptsLimit, p.MaxAttempts)
	}
	step := func(where string, st previewspec.Step) {
		switch {
		case st.Run == "" && len(st.Command) == 0:
			bad(where, "needs run (a shell script) or command (an argv list)")
		case st.Run != "" && len(st.Command) > 0:
			bad(where, "must give run or command, not both")
		case len(st.Command) > 0 && st.Command[0] == "":
			bad(where+".command[0]", "is empty")
		}
		if d := st.Timeout.D(); d < time.Second || d > 6*time.Hour {
			bad(where+".timeout", "must be between 1s and 6h (got %s)", d)
		}
	}
	for j, st := range p.Setup {
		step(fmt.Sprintf("setup[%d]", j), st)
	}
	if p.Install != nil {
		step("install", *p.Install)
	}
	if len(p.RunnerCommand) > 0 && strings.TrimSpace(p.RunnerCommand[0]) == "" {
		bad("runner_command[0]", "is empty")
	}
	for j, c := range p.Caches {
		if _, err := CacheDir(c); err != nil {
			bad(fmt.Sprintf("caches[%d]", j), "%v", err)
		}
	}
	for j, pw := range p.Prewarm {
		if err := ValidateCron(pw.Cron); err != nil {
			bad(fmt.Sprintf("prewarm[%d].cron", j), "is invalid: %v", err)
		}
		if pw.Count < 1 {
			bad(fmt.Sprintf("prewarm[%d].count", j), "must be at least 1 (got %d)", pw.Count)
		}
	}
	return errs
}

// scopeProblems checks which repositories the pool serves and where its
// runners land: an organization pool must say which repositories or owners
// it takes (fail closed: no list is refused, ["*"] is every repository of
// the organization) and use its own runner group unless allow_default_group.
func (p *Pool) scopeProblems(field func(string) string) []error {
	var errs []error
	bad := func(f, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s %s", field(f), fmt.Sprintf(format, args...)))
	}
	name := p.Name
	if name == "" {
		name = "(unnamed)"
	}
	switch {
	case p.Scope.Kind == ScopeOrg && (!githubLogin.MatchString(p.Scope.Org) || p.Scope.Repo != ""),
		p.Scope.Kind == ScopeRepo && p.Scope.Org != "",
		p.Scope.Kind != ScopeOrg && p.Scope.Kind != ScopeRepo:
		return nil // the scope's own problems are reported
	}
	org := p.Scope.Kind == ScopeOrg
	if org && len(p.Repositories) == 0 && len(p.Owners) == 0 {
		bad("repositories", "is required: pool %s must list the repositories (owner/name) or owners whose jobs it takes, or repositories: [\"*\"] for every repository of organization %s", name, p.Scope.Org)
	}
	for j, r := range p.Repositories {
		f := fmt.Sprintf("repositories[%d]", j)
		if r == AnyRepository {
			if len(p.Repositories) > 1 {
				bad(f, "\"*\" takes every repository: list it alone")
			}
			continue
		}
		owner, repo, ok := strings.Cut(r, "/")
		switch {
		case !ok || !githubLogin.MatchString(owner) || !githubRepo.MatchString(repo) || repo == "." || repo == "..":
			bad(f, "must be owner/name or \"*\" (got %q)", r)
		case org && !strings.EqualFold(owner, p.Scope.Org):
			bad(f, "%q is not in organization %s, where the pool's runners register", r, p.Scope.Org)
		case p.Scope.Kind == ScopeRepo && !strings.EqualFold(r, p.Scope.Repo):
			bad(f, "%q is not %s, where the pool's runners register", r, p.Scope.Repo)
		}
	}
	for j, o := range p.Owners {
		f := fmt.Sprintf("owners[%d]", j)
		switch {
		case !githubLogin.MatchString(o):
			bad(f, "%q is not a GitHub organization login", o)
		case org && !strings.EqualFold(o, p.Scope.Org):
			bad(f, "%q is not organization %s, where the pool's runners register", o, p.Scope.Org)
		case p.Scope.Kind == ScopeRepo:
			bad(f, "must be empty for scope kind repo (the pool serves %s)", p.Scope.Repo)
		}
	}
	if org && !p.AllowDefaultGroup {
		switch {
		case p.RunnerGroupID == DefaultRunnerGroupID:
			bad("runner_group_id", "must name the runner group of pool %s: the Default group (1) of organization %s is open to all its repositories (set allow_default_group: true to accept that)", name, p.Scope.Org)
		case p.Mode == ModePersistent:
			bad("allow_default_group", "must be true for pool %s: a persistent runner registers in organization %s's Default group (runner_group_id applies to JIT runners only)", name, p.Scope.Org)
		}
	}
	return errs
}

// InvalidError lists what is wrong with a pools configuration.
type InvalidError struct{ Problems []error }

func (e *InvalidError) Error() string {
	var b strings.Builder
	b.WriteString("invalid runner pools configuration:")
	for _, p := range e.Problems {
		b.WriteString("\n- ")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Names lists the pools' names in configuration order.
func (c *Config) Names() []string {
	out := make([]string, len(c.Pools))
	for i := range c.Pools {
		out[i] = c.Pools[i].Name
	}
	return out
}

// CacheDir is a declared cache directory ("~/.cargo/registry") as a path
// relative to the runner's home (".cargo/registry"). It refuses anything
// else than a plain directory below the home, and the runner's own
// directories (actions-runner, .drydock), which are kept anyway.
func CacheDir(c string) (string, error) {
	rel, ok := strings.CutPrefix(c, "~/")
	if !ok {
		return "", fmt.Errorf("%q must be a directory of the runner's home, written ~/dir", c)
	}
	if rel == "" || strings.ContainsAny(rel, "\x00\n\r\t\\*?[") || len(c) > 200 {
		return "", fmt.Errorf("%q is not a plain directory name", c)
	}
	rel = strings.TrimSuffix(rel, "/")
	for _, part := range strings.Split(rel, "/") {
		if part == "" || part == "." || part == ".." {
			return "", fmt.Errorf("%q must be a clean path below the home (no empty, . or .. parts)", c)
		}
	}
	switch first, _, _ := strings.Cut(rel, "/"); first {
	case "actions-runner", ".drydock":
		return "", fmt.Errorf("%q is the runner's own directory, not a cache", c)
	case "tmp", ".drydock-caches-held":
		// The runner's TMPDIR (emptied after every job) and where the
		// cleanup holds the caches.
		return "", fmt.Errorf("%q is the runner's scratch space, not a cache", c)
	}
	return rel, nil
}
