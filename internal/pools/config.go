package pools

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

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
	p.Scope.inferKind()
	orDefault(&p.Machine.VCPU, DefaultVCPU)
	orDefault(&p.Machine.MemoryMiB, DefaultMemoryMiB)
	orDefault(&p.Machine.StorageGiB, DefaultStorageGiB)
	orDefault(&p.Machine.Autosleep, DefaultAutosleep)
	orDefault(&p.MaxMachines, DefaultMaxMachines)
	orDefault(&p.Mode, ModeJIT)
	orDefault(&p.Isolation, p.IsolationMode()) // after Mode: a persistent pool's is shared
	orDefault(&p.RunnerVersion, DefaultRunnerVersion)
	orDefault(&p.RunnerGroupID, DefaultRunnerGroupID)
	orDefault(&p.PickupTimeout, previewspec.Duration(DefaultPickupTimeout))
	orDefault(&p.MaxAttempts, DefaultMaxAttempts)
	orDefault(&p.LeaseCheckEvery, previewspec.Duration(DefaultLeaseCheckEvery))
	for i := range p.Setup {
		orDefault(&p.Setup[i].Timeout, previewspec.Duration(previewspec.DefaultStepTimeout))
	}
	if p.Install != nil {
		orDefault(&p.Install.Timeout, previewspec.Duration(previewspec.DefaultStepTimeout))
	}
}

// orDefault sets *v to def when it holds its type's zero value (unset).
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// inferKind sets the kind of a scope with only org or only repo set.
func (s *Scope) inferKind() {
	if s.Kind != "" {
		return
	}
	switch {
	case s.Org != "" && s.Repo == "":
		s.Kind = ScopeOrg
	case s.Repo != "" && s.Org == "":
		s.Kind = ScopeRepo
	}
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
