// Package previewspec is the per-repository preview spec: the machine a
// pull request's preview runs on and the commands that bootstrap it. It is
// read from `.drydock/preview.yml` on the PR's base branch (trusted code, not
// the PR's) or from the server's default file, in YAML or JSON.
//
// The commands are the repository owner's; pull request data (branch, SHA,
// clone URL) reaches them only as environment variables (DRYDOCK_*).
package previewspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/drydock-dev/drydock/internal/machinespec"
)

// RepoPath is where a repository keeps its spec, read from the base branch.
const RepoPath = ".drydock/preview.yml"

// Spec is a validated preview spec.
type Spec struct {
	Machine Machine           `json:"machine" yaml:"machine"`
	App     App               `json:"app" yaml:"app"`
	Env     map[string]string `json:"env,omitempty" yaml:"env"`
	// Setup runs once per machine, after the first checkout (toolchains, system packages).
	Setup []Step `json:"setup,omitempty" yaml:"setup"`
	// Build runs for every new head SHA (install dependencies, compile, migrate).
	Build []Step `json:"build,omitempty" yaml:"build"`
	// Seed runs once per machine, after the first build (test data).
	Seed []Step `json:"seed,omitempty" yaml:"seed"`
	// Start launches the app as a daemon; it is restarted on every redeploy.
	Start Step `json:"start" yaml:"start"`
	// Visibility is who may open the repository's previews: public, org or
	// private. It wins over the worker's PREVIEW_VISIBILITY_REPOS and
	// PREVIEW_VISIBILITY, up to the operator's ceiling
	// (PREVIEW_VISIBILITY_MAX). Empty: the worker's setting.
	Visibility string `json:"visibility,omitempty" yaml:"visibility"`
}

// Preview visibilities, from the most closed to the most open (the same
// names as Dedalus's preview visibility and workflows.Visibility*).
const (
	VisibilityPrivate = "private" // people with read access to the repository
	VisibilityOrg     = "org"     // members of the repository owner's organization
	VisibilityPublic  = "public"  // anyone with the URL
)

// visibilityRank orders the visibilities by openness.
var visibilityRank = map[string]int{VisibilityPrivate: 1, VisibilityOrg: 2, VisibilityPublic: 3}

// ValidVisibility reports whether v is public, org or private.
func ValidVisibility(v string) bool { return visibilityRank[v] > 0 }

// CapVisibility returns v, or ceiling when v is more open than ceiling. An
// unknown or empty v is private (fail closed); an empty ceiling caps nothing.
func CapVisibility(v, ceiling string) string {
	if !ValidVisibility(v) {
		return VisibilityPrivate
	}
	if ValidVisibility(ceiling) && visibilityRank[v] > visibilityRank[ceiling] {
		return ceiling
	}
	return v
}

// Machine is the size and idle window of the preview's machine.
type Machine = machinespec.Machine

// App says where the app listens and how to tell it is up.
type App struct {
	Port          int64    `json:"port" yaml:"port"`
	HealthPath    string   `json:"health_path" yaml:"health_path"`
	HealthTimeout Duration `json:"health_timeout" yaml:"health_timeout"`
}

// Step is one command: Run (a shell script, run with sh -c) or Command (argv).
type Step struct {
	Name    string   `json:"name,omitempty" yaml:"name"`
	Run     string   `json:"run,omitempty" yaml:"run"`
	Command []string `json:"command,omitempty" yaml:"command"`
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout"`
}

// Argv is the step as an argv array.
func (s Step) Argv() []string {
	if len(s.Command) > 0 {
		return s.Command
	}
	return []string{"sh", "-c", s.Run}
}

// Defaults of a spec's optional fields. Machine sizes follow the documented
// Dedalus preview recipe.
const (
	DefaultVCPU          = 2
	DefaultMemoryMiB     = 4096
	DefaultStorageGiB    = 20
	DefaultAutosleep     = "10m"
	DefaultPort          = 3000
	DefaultHealthPath    = "/"
	DefaultHealthTimeout = 2 * time.Minute
	DefaultStepTimeout   = 15 * time.Minute
)

// Duration is a time.Duration written as "90s", "10m" in YAML and JSON.
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func parseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("duration %q: use forms like 90s, 10m, 1h30m", s)
	}
	return Duration(v), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDuration(n.Value)
	*d = v
	return err
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"10m\"")
	}
	v, err := parseDuration(s)
	*d = v
	return err
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// MaxSize bounds a spec file.
const MaxSize = 64 << 10

// Parse reads a spec in YAML or JSON (JSON is YAML), rejects unknown fields,
// fills defaults and validates it. Errors list every problem found.
func Parse(data []byte) (*Spec, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("preview spec is %d bytes; the limit is %d", len(data), MaxSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("preview spec is empty")
	}
	var s Spec
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("preview spec: %w", err)
	}
	s.applyDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *Spec) applyDefaults() {
	if s.Machine.VCPU == 0 {
		s.Machine.VCPU = DefaultVCPU
	}
	if s.Machine.MemoryMiB == 0 {
		s.Machine.MemoryMiB = DefaultMemoryMiB
	}
	if s.Machine.StorageGiB == 0 {
		s.Machine.StorageGiB = DefaultStorageGiB
	}
	if s.Machine.Autosleep == "" {
		s.Machine.Autosleep = DefaultAutosleep
	}
	if s.App.Port == 0 {
		s.App.Port = DefaultPort
	}
	if s.App.HealthPath == "" {
		s.App.HealthPath = DefaultHealthPath
	}
	if s.App.HealthTimeout == 0 {
		s.App.HealthTimeout = Duration(DefaultHealthTimeout)
	}
	for _, steps := range [][]Step{s.Setup, s.Build, s.Seed} {
		for i := range steps {
			if steps[i].Timeout == 0 {
				steps[i].Timeout = Duration(DefaultStepTimeout)
			}
		}
	}
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate reports every problem of a spec at once.
func (s *Spec) Validate() error {
	var errs problemList
	for _, rule := range specRules {
		rule(s, &errs)
	}
	if len(errs) == 0 {
		return nil
	}
	// Sorted, so that the order does not depend on the map of env.
	slices.SortStableFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return &InvalidError{Problems: errs}
}

// specRules check a spec, each rule a field or a few related ones. Every
// rule runs: the owner sees every problem at once.
var specRules = []func(*Spec, *problemList){
	checkMachine,
	checkApp,
	checkEnv,
	checkSteps,
	checkVisibility,
}

// problemList gathers a spec's problems.
type problemList []error

func (l *problemList) add(format string, args ...any) { *l = append(*l, fmt.Errorf(format, args...)) }

func checkMachine(s *Spec, l *problemList) {
	for _, p := range s.Machine.Problems() {
		if p.Err != nil {
			l.add("machine.%s: %v", p.Field, p.Err)
			continue
		}
		l.add("machine.%s %s", p.Field, p.Message)
	}
}

func checkApp(s *Spec, l *problemList) {
	if s.App.Port < 1 || s.App.Port > 65535 {
		l.add("app.port must be between 1 and 65535 (got %d)", s.App.Port)
	}
	if !strings.HasPrefix(s.App.HealthPath, "/") {
		l.add("app.health_path must start with / (got %q)", s.App.HealthPath)
	}
	if d := s.App.HealthTimeout.D(); d < time.Second || d > time.Hour {
		l.add("app.health_timeout must be between 1s and 1h (got %s)", d)
	}
}

// checkEnv: the DRYDOCK_ variables carry the pull request's data to the
// commands; the spec must not shadow them.
func checkEnv(s *Spec, l *problemList) {
	for k := range s.Env {
		if !envName.MatchString(k) {
			l.add("env: %q is not a valid variable name", k)
		} else if strings.HasPrefix(k, "DRYDOCK_") {
			l.add("env: %q: the DRYDOCK_ prefix is reserved for the variables Drydock sets", k)
		}
	}
}

// checkSteps checks every command; start's timeout is not checked: the
// app it starts is a daemon.
func checkSteps(s *Spec, l *problemList) {
	for _, group := range []struct {
		name  string
		steps []Step
	}{{"setup", s.Setup}, {"build", s.Build}, {"seed", s.Seed}} {
		for i, st := range group.steps {
			where := fmt.Sprintf("%s[%d]", group.name, i)
			checkStep(l, where, st)
			if d := st.Timeout.D(); d < time.Second || d > 6*time.Hour {
				l.add("%s: timeout must be between 1s and 6h (got %s)", where, d)
			}
		}
	}
	checkStep(l, "start", s.Start)
}

// checkStep checks that a step has one command, as a script or an argv.
func checkStep(l *problemList, where string, st Step) {
	switch {
	case st.Run == "" && len(st.Command) == 0:
		l.add("%s: needs run (a shell script) or command (an argv list)", where)
	case st.Run != "" && len(st.Command) > 0:
		l.add("%s: give run or command, not both", where)
	case len(st.Command) > 0 && st.Command[0] == "":
		l.add("%s: command[0] is empty", where)
	}
}

func checkVisibility(s *Spec, l *problemList) {
	if s.Visibility != "" && !ValidVisibility(s.Visibility) {
		l.add("visibility must be public, org or private (got %q)", s.Visibility)
	}
}

// InvalidError lists what is wrong with a spec.
type InvalidError struct{ Problems []error }

func (e *InvalidError) Error() string {
	var b strings.Builder
	b.WriteString("invalid preview spec:")
	for _, p := range e.Problems {
		b.WriteString("\n- ")
		b.WriteString(p.Error())
	}
	return b.String()
}
