// Command worker runs Drydock's Temporal worker: it polls the drydock task
// queue and executes workflows and the activities that drive Dedalus machines.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/config"
	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/metrics"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/previewspec"
	"github.com/drydock-dev/drydock/internal/profiler"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/slotsapi"
)

// Config is the worker's configuration.
type Config struct {
	Temporal      config.Temporal `envconfig:"TEMPORAL"`
	TemporalUIURL string          `envconfig:"TEMPORAL_UI_URL" default:"http://localhost:8233" desc:"Temporal UI base URL, for the workflow links in PR comments"`
	Dedalus       dedalus.Config  `envconfig:"DEDALUS"`
	GitHub        gh.Config       `envconfig:"GITHUB"`

	PreviewDefaultSpec string        `envconfig:"PREVIEW_DEFAULT_SPEC" desc:"preview spec (YAML or JSON) for repositories without .drydock/preview.yml; empty: none"`
	PreviewPublicURL   string        `envconfig:"PREVIEW_PUBLIC_URL" default:"http://pr-{number}--{owner}--{repo}.preview.localhost:8090" desc:"URL reviewers open (the preview router); {number}, {owner}, {repo} are replaced"`
	PreviewStaleAfter  time.Duration `envconfig:"PREVIEW_STALE_AFTER" default:"168h" desc:"tear down previews with no push and no traffic for this long; 0: never"`
	PreviewKeepFailed  bool          `envconfig:"PREVIEW_KEEP_FAILED" default:"true" desc:"keep a failed preview's machine for debugging until the next push or close"`
	PreviewAwakeReport time.Duration `envconfig:"PREVIEW_AWAKE_REPORT_EVERY" default:"10m" desc:"least interval between two refreshes of the awake time on the PR comment after wakes (it is also written at every deploy and teardown); 0: only then"`
	PreviewVisibility  string        `envconfig:"PREVIEW_VISIBILITY" default:"private" desc:"who may open a preview: public (anyone with the URL), org (members of the repository owner's organization) or private (people with read access to the repository); a repository's PREVIEW_VISIBILITY_REPOS entry or its spec's visibility wins"`
	PreviewVisRepos    string        `envconfig:"PREVIEW_VISIBILITY_REPOS" desc:"per-repository visibility, comma-separated owner/repo=visibility (e.g. octo/docs=public,octo/app=org); a spec's visibility wins over it"`
	PreviewVisMax      string        `envconfig:"PREVIEW_VISIBILITY_MAX" default:"public" desc:"the most open visibility a repository's spec may ask for; a spec asking for more gets this (public: no ceiling)"`

	PreviewMaxOpen        int     `envconfig:"PREVIEW_MAX_OPEN" default:"0" desc:"most previews with a machine at once, over all repositories; more are queued (PR comment) and start when one closes; 0: unlimited"`
	PreviewMaxOpenPerRepo int     `envconfig:"PREVIEW_MAX_OPEN_PER_REPO" default:"0" desc:"most previews with a machine at once in one repository; 0: unlimited"`
	PreviewMaxVCPU        float64 `envconfig:"PREVIEW_MAX_VCPU" default:"0" desc:"largest machine.vcpu a preview spec may ask for; a larger one fails the deploy with a PR comment, no machine created; 0: unlimited"`
	PreviewMaxMemoryMiB   int64   `envconfig:"PREVIEW_MAX_MEMORY_MIB" default:"0" desc:"largest machine.memory_mib a preview spec may ask for; 0: unlimited"`
	PreviewMaxStorageGiB  int64   `envconfig:"PREVIEW_MAX_STORAGE_GIB" default:"0" desc:"largest machine.storage_gib a preview spec may ask for; 0: unlimited"`

	RunnerPoolsFile string        `envconfig:"RUNNER_POOLS_FILE" desc:"runner pools file (YAML or JSON); excludes RUNNER_POOLS; neither: no runner pools"`
	RunnerPools     string        `envconfig:"RUNNER_POOLS" desc:"runner pools inline (JSON or YAML), instead of RUNNER_POOLS_FILE"`
	ReconcileEvery  time.Duration `envconfig:"RECONCILE_EVERY" default:"15m" desc:"how often the reconciler looks for unowned machines and runners; 0: never"`
	ReconcileGrace  time.Duration `envconfig:"RECONCILE_GRACE" default:"30m" desc:"machines younger than this are never reconciled (they may be provisioning)"`

	MetricsAddr string        `envconfig:"WORKER_METRICS_ADDR" default:"127.0.0.1:9090" desc:"listen address of /metrics, /healthz and /readyz; empty: none"`
	Pprof       bool          `envconfig:"WORKER_PPROF" default:"false" desc:"also serve Go's profiler at /debug/pprof/ on WORKER_METRICS_ADDR (CPU profiles, heap, execution traces: make bench -pprof); keep that listener private"`
	StopTimeout time.Duration `envconfig:"WORKER_STOP_TIMEOUT" default:"30s" desc:"on SIGTERM, how long running activities may finish before they are cancelled"`
	// WorkflowCache bounds the workflows the worker keeps in memory between
	// their tasks (the SDK's sticky cache, 10000 by default): every open
	// preview is a workflow (tens of KiB each), and one evicted is replayed
	// from its history on its next signal, wake or timer.
	WorkflowCache int `envconfig:"WORKER_WORKFLOW_CACHE_SIZE" default:"10000" desc:"workflows kept in memory between their tasks (each open preview is one, tens of KiB); fewer bound the worker's memory, and an evicted one is replayed from its history on its next event"`
	// GCPercent is Go's GOGC for the worker. The worker's heap is mostly
	// cached workflows, which live for as long as their previews: with Go's
	// default (100) the heap grows to twice that before a collection. 50
	// keeps it within 1.5x, for about twice the (small) GC CPU.
	GCPercent int `envconfig:"WORKER_GC_PERCENT" default:"50" desc:"Go's GOGC for the worker: how far (%) the heap grows over the live heap before a collection; lower = less memory, more GC CPU; GOGC in the environment wins"`

	LogLevel string `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
}

// validate checks everything that can be checked without the network and
// names the variable at fault; it returns the runner pools it loaded.
func (c Config) validate() (*pools.Config, error) {
	if err := c.Temporal.Validate(); err != nil {
		return nil, err
	}
	if err := c.checkNumbers(); err != nil {
		return nil, err
	}
	if err := c.checkDedalus(); err != nil {
		return nil, err
	}
	if err := c.checkURLs(); err != nil {
		return nil, err
	}
	if c.GitHub.Configured() {
		if err := c.GitHub.Validate(); err != nil {
			return nil, config.Invalid(err)
		}
	}
	if err := checkDefaultSpec(c.PreviewDefaultSpec); err != nil {
		return nil, err
	}
	pc, err := c.runnerPools()
	if err != nil {
		return nil, err
	}
	if c.MetricsAddr != "" {
		if err := config.CheckHostPort("WORKER_METRICS_ADDR", c.MetricsAddr); err != nil {
			return nil, err
		}
	}
	return pc, nil
}

// checkDedalus checks the Dedalus API settings.
func (c Config) checkDedalus() error {
	if c.Dedalus.APIKey == "" {
		return errors.New("configuration: DEDALUS_API_KEY is required (the emulator's key locally: make dev sets it)")
	}
	if _, err := dedalus.NewFromConfig(c.Dedalus); err != nil {
		return config.Invalid(err)
	}
	return nil
}

// checkURLs checks PREVIEW_PUBLIC_URL and TEMPORAL_UI_URL.
func (c Config) checkURLs() error {
	if err := previewURLTemplate(c.PreviewPublicURL); err != nil {
		return fmt.Errorf("configuration: PREVIEW_PUBLIC_URL=%q: %w", c.PreviewPublicURL, err)
	}
	if u, err := url.Parse(c.TemporalUIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("configuration: TEMPORAL_UI_URL=%q: want an absolute http(s) URL", c.TemporalUIURL)
	}
	return nil
}

// checkNumbers refuses negative durations and caps, and an empty workflow cache.
func (c Config) checkNumbers() error {
	for name, d := range map[string]time.Duration{
		"PREVIEW_STALE_AFTER": c.PreviewStaleAfter, "RECONCILE_EVERY": c.ReconcileEvery, "PREVIEW_AWAKE_REPORT_EVERY": c.PreviewAwakeReport,
		"RECONCILE_GRACE": c.ReconcileGrace, "WORKER_STOP_TIMEOUT": c.StopTimeout,
	} {
		if d < 0 {
			return fmt.Errorf("configuration: %s=%s must not be negative", name, d)
		}
	}
	if _, err := c.previewVisibility(); err != nil {
		return err
	}
	for name, n := range map[string]float64{
		"PREVIEW_MAX_OPEN": float64(c.PreviewMaxOpen), "PREVIEW_MAX_OPEN_PER_REPO": float64(c.PreviewMaxOpenPerRepo),
		"PREVIEW_MAX_VCPU": c.PreviewMaxVCPU, "PREVIEW_MAX_MEMORY_MIB": float64(c.PreviewMaxMemoryMiB), "PREVIEW_MAX_STORAGE_GIB": float64(c.PreviewMaxStorageGiB),
	} {
		if n < 0 {
			return fmt.Errorf("configuration: %s=%v must not be negative (0: unlimited)", name, n)
		}
	}
	if c.GCPercent < 10 {
		return fmt.Errorf("configuration: WORKER_GC_PERCENT=%d: want 10 or more (Go's default is 100)", c.GCPercent)
	}
	if c.WorkflowCache < 1 {
		return fmt.Errorf("configuration: WORKER_WORKFLOW_CACHE_SIZE=%d: want 1 or more (the SDK's default is 10000)", c.WorkflowCache)
	}
	return nil
}

// checkDefaultSpec reads and parses PREVIEW_DEFAULT_SPEC, when set.
func checkDefaultSpec(path string) error {
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("configuration: PREVIEW_DEFAULT_SPEC: %w", err)
		}
		if _, err := previewspec.Parse(b); err != nil {
			return fmt.Errorf("configuration: PREVIEW_DEFAULT_SPEC %s: %w", path, err)
		}
	}
	return nil
}

// runnerPools loads RUNNER_POOLS(_FILE) and checks what the pools need.
func (c Config) runnerPools() (*pools.Config, error) {
	pc, err := pools.LoadFrom(c.RunnerPoolsFile, c.RunnerPools)
	if err != nil {
		return nil, config.Invalid(err)
	}
	if err := activities.CheckRunnerCommands(pc); err != nil {
		return nil, fmt.Errorf("configuration: RUNNER_POOLS: %w", err)
	}
	if len(pc.Pools) > 0 && !c.GitHub.Configured() {
		return nil, fmt.Errorf("configuration: runner pools (%s) register runners with GitHub: set GITHUB_TOKEN or GITHUB_APP_*", strings.Join(pc.Names(), ", "))
	}
	return pc, nil
}

// previewVisibility checks PREVIEW_VISIBILITY, PREVIEW_VISIBILITY_REPOS and
// PREVIEW_VISIBILITY_MAX and returns the per-repository settings: every
// name is public, org or private, and the operator's own settings are within
// the ceiling (the ceiling caps repository specs; an operator setting above
// it is a contradiction, not something to cap silently).
func (c Config) previewVisibility() (map[string]string, error) {
	for name, v := range map[string]string{"PREVIEW_VISIBILITY": c.PreviewVisibility, "PREVIEW_VISIBILITY_MAX": c.PreviewVisMax} {
		if !previewspec.ValidVisibility(v) {
			return nil, fmt.Errorf("configuration: %s=%q: want public, org or private", name, v)
		}
	}
	repos, err := activities.ParseVisibilityRepos(c.PreviewVisRepos)
	if err != nil {
		return nil, fmt.Errorf("configuration: PREVIEW_VISIBILITY_REPOS: %w", err)
	}
	if previewspec.CapVisibility(c.PreviewVisibility, c.PreviewVisMax) != c.PreviewVisibility {
		return nil, fmt.Errorf("configuration: PREVIEW_VISIBILITY=%s is more open than PREVIEW_VISIBILITY_MAX=%s", c.PreviewVisibility, c.PreviewVisMax)
	}
	for repo, v := range repos {
		if previewspec.CapVisibility(v, c.PreviewVisMax) != v {
			return nil, fmt.Errorf("configuration: PREVIEW_VISIBILITY_REPOS: %s=%s is more open than PREVIEW_VISIBILITY_MAX=%s", repo, v, c.PreviewVisMax)
		}
	}
	return repos, nil
}

// previewCaps are the PREVIEW_MAX_* settings.
func (c Config) previewCaps() activities.PreviewCaps {
	return activities.PreviewCaps{
		Slots:   slotsapi.Caps{MaxOpen: c.PreviewMaxOpen, MaxOpenPerRepo: c.PreviewMaxOpenPerRepo},
		MaxVCPU: c.PreviewMaxVCPU, MaxMemoryMiB: c.PreviewMaxMemoryMiB, MaxStorageGiB: c.PreviewMaxStorageGiB,
	}
}

// awakeReportSetting maps PREVIEW_AWAKE_REPORT_EVERY to the preview
// setting, where 0 means the default and a negative value never.
func awakeReportSetting(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// previewURLTemplate checks PREVIEW_PUBLIC_URL: an absolute http(s) URL
// once its placeholders are filled in.
func previewURLTemplate(tmpl string) error {
	filled := strings.NewReplacer("{number}", "1", "{owner}", "o", "{repo}", "r").Replace(tmpl)
	u, err := url.Parse(filled)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want an absolute http(s) URL with {number}, {owner} and {repo} placeholders")
	}
	if !strings.Contains(tmpl, "{number}") {
		return errors.New("the URL must contain {number}, or every pull request would get the same URL")
	}
	return nil
}

func main() {
	var cfg Config
	config.Main("worker", "runs Drydock's workflows and activities", &cfg, func() error { return run(cfg) })
}

func run(cfg Config) error {
	if err := config.Load(&cfg); err != nil {
		return err
	}
	log, err := config.Logger(cfg.LogLevel)
	if err != nil {
		return err
	}
	pc, err := cfg.validate()
	if err != nil {
		return err
	}
	reg := metrics.New("worker")
	defer reg.Close()
	d, err := connect(cfg, reg, log)
	if err != nil {
		return err
	}
	defer d.tc.Close()
	tc, dc := d.tc, d.dc
	registerStateMetrics(reg, tc, pc, log)
	registerRunnerMetrics(reg, tc, pc, log)
	w, fatal := newWorker(cfg, d, pc, reg, log)

	ctx, stop := config.SignalContext(nil)
	defer stop()
	var polling atomic.Bool
	health := metrics.NewHealth(func(ctx context.Context) error {
		if !polling.Load() {
			return errors.New("worker not polling yet")
		}
		return config.TemporalReady(tc)(ctx)
	})
	adminAddr, stopAdmin, err := config.ServeAdmin(cfg.MetricsAddr, "WORKER_METRICS_ADDR", profiler.Wrap(reg.Admin(health), cfg.Pprof))
	if err != nil {
		return err
	}
	defer stopAdmin()
	if err := ensureSchedules(ctx, tc, pc, cfg.ReconcileEvery); err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return fmt.Errorf("worker start: %w", err)
	}
	polling.Store(true)
	log.Info("worker polling", "task_queue", workflows.TaskQueue, "temporal", cfg.Temporal.Describe(),
		"dedalus", dc.BaseURL(), "admin", adminAddr, "preview_visibility", cfg.PreviewVisibility)
	select {
	case <-ctx.Done():
	case err := <-fatal:
		health.Stopping()
		return fmt.Errorf("worker stopped: %w", err)
	}
	health.Stopping()
	log.Info("worker stopping: no new tasks; running activities may finish", "stop_timeout", cfg.StopTimeout)
	w.Stop()
	log.Info("worker stopped")
	return nil
}

// ensureSchedules brings the schedules, which live in Temporal, in line
// with this configuration at every worker start (idempotent).
func ensureSchedules(ctx context.Context, tc client.Client, pc *pools.Config, reconcileEvery time.Duration) error {
	if err := workflows.EnsurePoolSchedules(ctx, tc, pc); err != nil {
		return fmt.Errorf("runner pool schedules: %w", err)
	}
	if err := workflows.EnsureReconcileSchedule(ctx, tc, reconcileEvery); err != nil {
		return fmt.Errorf("reconcile schedule: %w", err)
	}
	return nil
}

// deps are the worker's clients: Dedalus, Temporal, GitHub (nil Clients
// in local mode).
type deps struct {
	dc     *dedalus.Client
	tc     client.Client
	github *activities.GitHub
}

// connect makes the clients (Temporal dialled: the worker cannot run without it).
func connect(cfg Config, reg *metrics.Registry, log *slog.Logger) (deps, error) {
	dopts := cfg.Dedalus.Options()
	dm := metrics.NewDedalus(reg)
	dopts.OnError, dopts.OnQuotaExceeded = dm.Error, dm.Quota
	dc, err := dedalus.New(dopts)
	if err != nil {
		return deps{}, err
	}
	cfg.Temporal.MetricsHandler = reg.Temporal()
	tc, err := cfg.Temporal.Dial(log)
	if err != nil {
		return deps{}, err
	}
	ghActs := &activities.GitHub{UIBaseURL: cfg.TemporalUIURL, Namespace: cfg.Temporal.Namespace, Logger: log}
	if cfg.GitHub.Configured() {
		if ghActs.Clients, err = gh.NewClients(cfg.GitHub); err != nil {
			tc.Close()
			return deps{}, err
		}
		ghActs.Clients.SetMetrics(metrics.NewGitHub(reg))
		log.Info("GitHub reporting enabled", "api", ghActs.Clients.BaseURL(), "auth", ghActs.Clients.Mode())
	} else {
		log.Info("GitHub reporting disabled: no GITHUB_TOKEN or GITHUB_APP_ID (local mode)")
	}
	return deps{dc: dc, tc: tc, github: ghActs}, nil
}

// newWorker makes the worker with every workflow and activity registered;
// the channel gets the SDK's fatal error, if any.
func newWorker(cfg Config, d deps, pc *pools.Config, reg *metrics.Registry, log *slog.Logger) (worker.Worker, <-chan error) {
	machines := &activities.Machines{Client: d.dc, HeartbeatEvery: 2 * time.Second, Metrics: metrics.NewMachines(reg)}
	reconciler := &activities.Reconciler{Dedalus: d.dc, Temporal: d.tc, Pools: pc, Grace: cfg.ReconcileGrace, Logger: log}
	if d.github.Clients != nil {
		reconciler.Runners = activities.GitHubRunnerDirectory(d.github.Clients)
	}
	// On SIGTERM the worker stops polling at once and gives running
	// activities WORKER_STOP_TIMEOUT to finish; those still running are
	// then cancelled, and Temporal retries them on another worker after
	// their heartbeat timeout.
	fatal := make(chan error, 1)
	worker.SetStickyWorkflowCacheSize(cfg.WorkflowCache) // process-wide: before the worker starts
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(cfg.GCPercent)
	}
	w := worker.New(d.tc, workflows.TaskQueue, worker.Options{
		WorkerStopTimeout: cfg.StopTimeout,
		OnFatalError:      func(err error) { fatal <- err },
	})
	workflows.Register(w)
	w.RegisterActivity(machines)
	w.RegisterActivity(&activities.Runners{Machines: machines, GitHub: d.github.Clients, Pools: pc, Temporal: d.tc, TaskQueue: workflows.TaskQueue, Logger: log})
	w.RegisterActivity(reconciler)
	visRepos, _ := cfg.previewVisibility() // validated
	w.RegisterActivity(&activities.Previews{
		DefaultSpecPath: cfg.PreviewDefaultSpec, PublicURLTemplate: cfg.PreviewPublicURL,
		StaleAfter: cfg.PreviewStaleAfter, KeepFailedMachine: cfg.PreviewKeepFailed,
		AwakeReportEvery: awakeReportSetting(cfg.PreviewAwakeReport),
		Visibility:       cfg.PreviewVisibility, VisibilityRepos: visRepos, VisibilityMax: cfg.PreviewVisMax,
		Caps: cfg.previewCaps(),
	})
	w.RegisterActivity(&activities.PreviewSlots{Temporal: d.tc, TaskQueue: workflows.TaskQueue, Logger: log})
	w.RegisterActivity(d.github)
	return w, fatal
}
