package pools

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/drydock-dev/drydock/internal/previewspec"
)

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
	for i := range c.Pools {
		p := &c.Pools[i]
		at := fmt.Sprintf("pools[%d]", i)
		errs = append(errs, p.problems(at)...)
		if j := c.namedBefore(i); j >= 0 {
			errs = append(errs, fmt.Errorf("%s.name: %q is also the name of pools[%d]", at, p.Name, j))
		}
		if j := c.shadowing(i); j >= 0 {
			errs = append(errs, fmt.Errorf("%s.labels: every job these labels take goes to pools[%d] (%s) first, whose labels include them all; list the pool with fewer labels first",
				at, j, c.Pools[j].Name))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &InvalidError{Problems: errs}
}

// namedBefore returns the first pool before pools[i] with its name, or -1.
func (c *Config) namedBefore(i int) int {
	if c.Pools[i].Name == "" {
		return -1 // reported as a bad name
	}
	for j := range i {
		if c.Pools[j].Name == c.Pools[i].Name {
			return j
		}
	}
	return -1
}

// shadowing returns the first pool before pools[i] that takes every job
// pools[i] would, or -1. Match takes the first pool whose labels include
// all of a job's: a later pool whose labels an earlier one includes never
// gets a job.
func (c *Config) shadowing(i int) int {
	if len(c.Pools[i].Labels) == 0 {
		return -1
	}
	for j := range i {
		if covers(c.Pools[j].Labels, c.Pools[i].Labels) {
			return j
		}
	}
	return -1
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

// poolRules check a pool, each rule a field or a few related ones, in the
// order their problems are listed. Every rule runs: the operator sees every
// problem at once.
var poolRules = []func(*Pool, *problemList){
	checkName,
	checkLabels,
	checkScope,
	checkRepositories,
	checkOwners,
	checkOrgRunnerGroup,
	checkMachine,
	checkCapacity,
	checkMode,
	checkIsolation,
	checkRunner,
	checkTimings,
	checkSteps,
	checkCaches,
	checkPrewarm,
}

func (p *Pool) problems(at string) []error {
	l := &problemList{at: at}
	for _, rule := range poolRules {
		rule(p, l)
	}
	return l.errs
}

// problemList gathers a pool's problems, each naming its field: with the
// pool's path (pools[1].machine.vcpu) in a configuration, bare (machine.vcpu)
// for a pool validated alone.
type problemList struct {
	at   string
	errs []error
}

// add records the problem "FIELD MESSAGE".
func (l *problemList) add(field, format string, args ...any) {
	if l.at != "" {
		field = l.at + "." + field
	}
	l.errs = append(l.errs, fmt.Errorf("%s %s", field, fmt.Sprintf(format, args...)))
}

type integer interface{ ~int | ~int64 }

// between records "FIELD must be between LO and HI (got V)" unless lo <= v <= hi.
func between[T integer](l *problemList, field string, v, lo, hi T) {
	if v < lo || v > hi {
		l.add(field, "must be between %d and %d (got %d)", lo, hi, v)
	}
}

// atLeast records "FIELD must be at least LO (got V)" unless lo <= v.
func atLeast[T integer](l *problemList, field string, v, lo T) {
	if v < lo {
		l.add(field, "must be at least %d (got %d)", lo, v)
	}
}

func checkName(p *Pool, l *problemList) {
	if !poolName.MatchString(p.Name) {
		l.add("name", "must be 1 to 39 lower-case letters, digits and dashes, starting with a letter or digit (got %q)", p.Name)
	}
}

func checkLabels(p *Pool, l *problemList) {
	if len(p.Labels) == 0 {
		l.add("labels", "must list the runs-on labels the pool takes (e.g. [self-hosted, linux, x64])")
	}
	for j, label := range p.Labels {
		switch {
		case strings.TrimSpace(label) == "":
			l.add(fmt.Sprintf("labels[%d]", j), "is empty")
		case len(label) > 100 || strings.ContainsAny(label, ",\n\r\t"):
			l.add(fmt.Sprintf("labels[%d]", j), "%q is not a runner label", label)
		}
	}
}

func checkMachine(p *Pool, l *problemList) {
	for _, mp := range p.Machine.Problems() {
		l.add("machine."+mp.Field, "%s", mp.Message)
	}
}

// checkCapacity checks max_machines and min_idle; min_idle is compared
// with a max_machines that is valid only.
func checkCapacity(p *Pool, l *problemList) {
	atLeast(l, "max_machines", p.MaxMachines, 1)
	if p.MinIdle < 0 {
		l.add("min_idle", "must not be negative (got %d)", p.MinIdle)
	} else if p.MaxMachines >= 1 && p.MinIdle > p.MaxMachines {
		l.add("min_idle", "(%d) must not exceed max_machines (%d)", p.MinIdle, p.MaxMachines)
	}
}

func checkMode(p *Pool, l *problemList) {
	if p.Mode != ModeJIT && p.Mode != ModePersistent {
		l.add("mode", "must be %s or %s (got %q)", ModeJIT, ModePersistent, p.Mode)
	}
}

func checkIsolation(p *Pool, l *problemList) {
	switch p.Isolation {
	case IsolationPerRepo, IsolationFresh:
		if p.Mode == ModePersistent {
			l.add("isolation", "must be %s for persistent pool %s (got %q): GitHub gives a persistent runner any job of the pool, so the pool cannot keep a machine to one repository; use mode %s", IsolationShared, p.Name, p.Isolation, ModeJIT)
		}
	case IsolationShared:
	default:
		l.add("isolation", "must be %s, %s or %s (got %q)", IsolationPerRepo, IsolationShared, IsolationFresh, p.Isolation)
	}
}

func checkRunner(p *Pool, l *problemList) {
	if !runnerVersion.MatchString(p.RunnerVersion) {
		l.add("runner_version", "must be an actions/runner version like %s (got %q)", DefaultRunnerVersion, p.RunnerVersion)
	}
	atLeast(l, "runner_group_id", p.RunnerGroupID, 1)
}

// checkTimings checks how long a job waits for pickup, how often leases
// are checked and how many machines a job is tried on.
func checkTimings(p *Pool, l *problemList) {
	if d := p.PickupTimeout.D(); d < time.Second || d > time.Hour {
		l.add("pickup_timeout", "must be between 1s and 1h (got %s)", d)
	}
	if d := p.LeaseCheckEvery.D(); d < MinLeaseCheckEvery {
		l.add("lease_check_every", "must be at least %s (got %s)", MinLeaseCheckEvery, d)
	}
	between(l, "max_attempts", p.MaxAttempts, 1, MaxAttemptsLimit)
}

// checkSteps checks the commands that set a machine up and start its runner.
func checkSteps(p *Pool, l *problemList) {
	for j, st := range p.Setup {
		checkStep(l, fmt.Sprintf("setup[%d]", j), st)
	}
	if p.Install != nil {
		checkStep(l, "install", *p.Install)
	}
	if len(p.RunnerCommand) > 0 && strings.TrimSpace(p.RunnerCommand[0]) == "" {
		l.add("runner_command[0]", "is empty")
	}
}

func checkStep(l *problemList, where string, st previewspec.Step) {
	switch {
	case st.Run == "" && len(st.Command) == 0:
		l.add(where, "needs run (a shell script) or command (an argv list)")
	case st.Run != "" && len(st.Command) > 0:
		l.add(where, "must give run or command, not both")
	case len(st.Command) > 0 && st.Command[0] == "":
		l.add(where+".command[0]", "is empty")
	}
	if d := st.Timeout.D(); d < time.Second || d > 6*time.Hour {
		l.add(where+".timeout", "must be between 1s and 6h (got %s)", d)
	}
}

func checkCaches(p *Pool, l *problemList) {
	for j, c := range p.Caches {
		if _, err := CacheDir(c); err != nil {
			l.add(fmt.Sprintf("caches[%d]", j), "%v", err)
		}
	}
}

func checkPrewarm(p *Pool, l *problemList) {
	for j, pw := range p.Prewarm {
		if err := ValidateCron(pw.Cron); err != nil {
			l.add(fmt.Sprintf("prewarm[%d].cron", j), "is invalid: %v", err)
		}
		atLeast(l, fmt.Sprintf("prewarm[%d].count", j), pw.Count, 1)
	}
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
