// Command bench is `make bench`: it measures Drydock on this machine, each
// figure beside a baseline measured in the same run (absolute times on a
// shared 2-core machine are noisy; ratios are what count), prints a table,
// writes bench/results.json and, with -doc, puts the table in docs/performance.md.
//
// Every scenario runs against a real `temporal server start-dev`, the
// Dedalus emulator, the GitHub API test double and the real worker, webhook
// and router binaries (see internal/testing/harness). Timing goals are reported,
// never asserted: bench exits non-zero only when a scenario cannot run.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/drydock-dev/drydock/internal/testing/harness"
)

// Row is one measured figure.
type Row struct {
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	// Baseline is the same figure for the baseline, measured in the same run.
	Baseline *float64 `json:"baseline,omitempty"`
	// Ratio is Value/Baseline (or as Note says).
	Ratio *float64 `json:"ratio,omitempty"`
	Goal  string   `json:"goal,omitempty"`
	// Met says whether the goal was reached (reported, never asserted).
	Met  *bool  `json:"met,omitempty"`
	Note string `json:"note,omitempty"`
}

// Scenario is one benchmark.
type Scenario struct {
	Order int
	Name  string // flag name
	Title string
	Run   func(ctx context.Context, e *Env) ([]Row, error)
}

// Env is what a scenario gets: built binaries and a way to start stacks.
type Env struct {
	Root        string
	Dir         string // scratch directory of the scenario
	Bins        string
	TemporalCLI string
	Log         *slog.Logger
	// Scale multiplies workload sizes (1 = the documented sizes).
	Scale float64
	// Pprof is where the scenarios that take profiles (-pprof) write them;
	// empty: none taken.
	Pprof string
}

// Start brings up a Drydock stack for the scenario (closed with the scenario).
func (e *Env) Start(ctx context.Context, opts harness.Options) (*harness.Harness, error) {
	if opts.Dir == "" {
		dir, err := os.MkdirTemp(e.Dir, "stack-*")
		if err != nil {
			return nil, err
		}
		opts.Dir = dir
	}
	opts.Bins, opts.TemporalCLI = e.Bins, e.TemporalCLI
	if opts.AllowedOwners == "" {
		// The owners the scenarios use: every delivery crosses the allow-list.
		opts.AllowedOwners = strings.Join([]string{intakeOwner, intakeOrg, runnerOrg, scaleOwner}, ",")
	}
	return harness.Start(ctx, opts)
}

// N scales a workload size (at least 1).
func (e *Env) N(n int) int { return max(1, int(float64(n)*e.Scale)) }

var scenarios []Scenario

func register(s Scenario) { scenarios = append(scenarios, s) }

// Result is one scenario's outcome.
type Result struct {
	Name    string  `json:"name"`
	Title   string  `json:"title"`
	Rows    []Row   `json:"rows"`
	Error   string  `json:"error,omitempty"`
	Seconds float64 `json:"seconds"`
}

// Report is bench/results.json.
type Report struct {
	Date      time.Time `json:"date"`
	Commit    string    `json:"commit"`
	Machine   Machine   `json:"machine"`
	Scale     float64   `json:"scale"`
	Scenarios []Result  `json:"scenarios"`
}

func main() {
	os.Exit(run())
}

func run() int {
	only := flag.String("only", "", "comma-separated scenarios to run (default: all): "+names())
	out := flag.String("out", "bench/results.json", "where to write the results (empty: nowhere)")
	doc := flag.String("doc", "", "page to update between the bench markers, after a full run at -scale 1 (make bench: docs/performance.md; empty: none)")
	scale := flag.Float64("scale", 1, "multiply the workload sizes (0.1 for a quick look)")
	keep := flag.Bool("keep", false, "keep the scratch directory (logs of every process)")
	pprofDir := flag.String("pprof", "", "directory for profiles: the webhook server's CPU during intake and the worker's during dispatch (extra phases), a router trace of the first cold burst (which the trace slows: measure without -pprof); empty: none; read them with go tool pprof -top and go tool trace")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	slices.SortFunc(scenarios, func(a, b Scenario) int { return a.Order - b.Order })
	chosen, err := chooseScenarios(*only)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if err := checkFlags(*pprofDir, *scale); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}

	root, err := harness.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	cli := os.Getenv("TEMPORAL_CLI")
	if cli == "" {
		fmt.Fprintln(os.Stderr, "bench: TEMPORAL_CLI is not set; run it as `make bench`")
		return 2
	}
	dir, cleanup, err := scratch(ctx, log, root, *keep)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer cleanup()

	rep := Report{Date: time.Now().UTC().Truncate(time.Second), Commit: commit(root), Machine: describeMachine(), Scale: *scale}
	base := Env{Root: root, Bins: filepath.Join(dir, "bin"), TemporalCLI: cli, Log: log, Scale: *scale, Pprof: *pprofDir}
	failed, err := runScenarios(ctx, base, dir, chosen, &rep)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	// Only a full run at the documented sizes goes into the docs.
	full := *only == "" && *scale == 1
	return writeReport(log, rep, failed, *out, *doc, full)
}

// chooseScenarios is the scenarios -only names (all when empty), in the
// order given.
func chooseScenarios(only string) ([]Scenario, error) {
	if only == "" {
		return scenarios, nil
	}
	var chosen []Scenario
	for _, n := range strings.Split(only, ",") {
		i := slices.IndexFunc(scenarios, func(s Scenario) bool { return s.Name == strings.TrimSpace(n) })
		if i < 0 {
			return nil, fmt.Errorf("unknown scenario %q (have: %s)", n, names())
		}
		chosen = append(chosen, scenarios[i])
	}
	return chosen, nil
}

// checkFlags makes the -pprof directory and checks -scale.
func checkFlags(pprofDir string, scale float64) error {
	if pprofDir != "" {
		if err := os.MkdirAll(pprofDir, 0o755); err != nil {
			return fmt.Errorf("-pprof: %w", err)
		}
	}
	if scale <= 0 {
		return errors.New("-scale must be positive")
	}
	return nil
}

// scratch makes the run's scratch directory and builds the binaries into
// its bin; cleanup removes it unless keep.
func scratch(ctx context.Context, log *slog.Logger, root string, keep bool) (dir string, cleanup func(), err error) {
	dir, err = os.MkdirTemp("", "drydock-bench-*")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() {}
	if keep {
		log.Info("scratch directory kept", "dir", dir)
	} else {
		cleanup = func() { os.RemoveAll(dir) }
	}
	log.Info("building the binaries")
	if err := harness.Build(ctx, root, filepath.Join(dir, "bin")); err != nil {
		cleanup()
		return "", nil, err
	}
	return dir, cleanup, nil
}

// runScenarios runs the chosen scenarios one after the other, each in its
// own directory under dir, adding their results to rep and printing each;
// it stops early when interrupted. failed says whether one failed.
func runScenarios(ctx context.Context, base Env, dir string, chosen []Scenario, rep *Report) (failed bool, err error) {
	log := base.Log
	for _, s := range chosen {
		sdir := filepath.Join(dir, s.Name)
		if err := os.MkdirAll(sdir, 0o755); err != nil {
			return failed, err
		}
		log.Info("scenario", "name", s.Name, "title", s.Title)
		env := base
		env.Dir, env.Log = sdir, log.With("scenario", s.Name)
		began := time.Now()
		rows, err := s.Run(ctx, &env)
		res := Result{Name: s.Name, Title: s.Title, Rows: rows, Seconds: time.Since(began).Round(100 * time.Millisecond).Seconds()}
		if err != nil {
			res.Error = err.Error()
			failed = true
			log.Error("scenario failed", "name", s.Name, "err", err, "logs", sdir)
		}
		rep.Scenarios = append(rep.Scenarios, res)
		fmt.Println(renderResult(res))
		if ctx.Err() != nil {
			break
		}
	}
	return failed, nil
}

// writeReport prints the table, writes the results to out (empty:
// nowhere) and, after a full run (every scenario at -scale 1) where none
// failed, the table into the page doc (empty: none). It is run's exit code.
func writeReport(log *slog.Logger, rep Report, failed bool, out, doc string, full bool) int {
	table := Render(rep)
	fmt.Println(table)
	if out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		log.Info("results written", "file", out)
	}
	if doc != "" && full && !failed {
		if err := updateDoc(doc, table); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		log.Info("table updated", "file", doc)
	}
	if failed {
		return 1
	}
	return 0
}

func names() string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.Name)
	}
	slices.Sort(n)
	return strings.Join(n, ",")
}

const (
	beginMarker = "<!-- bench:begin (written by make bench) -->"
	endMarker   = "<!-- bench:end -->"
)

// updateDoc puts table between the bench markers of the page at path.
func updateDoc(path, table string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i < 0 || j < i {
		return errors.New(path + " has no bench markers (" + beginMarker + " ... " + endMarker + ")")
	}
	s = s[:i+len(beginMarker)] + "\n" + table + "\n" + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
