// Command worker runs Drydock's Temporal worker: it polls the drydock task
// queue and executes workflows and the activities that drive Dedalus machines.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/config"
	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/previewspec"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
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

	RunnerPoolsFile string        `envconfig:"RUNNER_POOLS_FILE" desc:"runner pools file (YAML or JSON); excludes RUNNER_POOLS; neither: no runner pools"`
	RunnerPools     string        `envconfig:"RUNNER_POOLS" desc:"runner pools inline (JSON or YAML), instead of RUNNER_POOLS_FILE"`
	ReconcileEvery  time.Duration `envconfig:"RECONCILE_EVERY" default:"15m" desc:"how often the reconciler looks for unowned machines and runners; 0: never"`
	ReconcileGrace  time.Duration `envconfig:"RECONCILE_GRACE" default:"30m" desc:"machines younger than this are never reconciled (they may be provisioning)"`

	LogLevel string `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
}

func main() {
	var cfg Config
	config.HandleHelp(os.Args[1:], "worker", "runs Drydock's workflows and activities", &cfg)
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run(cfg Config) error {
	if err := config.Load(&cfg); err != nil {
		return err
	}
	log, err := config.Logger(cfg.LogLevel)
	if err != nil {
		return err
	}
	dc, err := dedalus.NewFromConfig(cfg.Dedalus)
	if err != nil {
		return err
	}
	tc, err := cfg.Temporal.Dial(log)
	if err != nil {
		return err
	}
	defer tc.Close()

	if cfg.PreviewDefaultSpec != "" {
		b, err := os.ReadFile(cfg.PreviewDefaultSpec)
		if err != nil {
			return fmt.Errorf("PREVIEW_DEFAULT_SPEC: %w", err)
		}
		if _, err := previewspec.Parse(b); err != nil {
			return fmt.Errorf("PREVIEW_DEFAULT_SPEC %s: %w", cfg.PreviewDefaultSpec, err)
		}
	}
	if cfg.PreviewStaleAfter < 0 {
		return fmt.Errorf("PREVIEW_STALE_AFTER=%s must not be negative", cfg.PreviewStaleAfter)
	}
	ghActs := &activities.GitHub{UIBaseURL: cfg.TemporalUIURL, Namespace: cfg.Temporal.Namespace, Logger: log}
	if cfg.GitHub.Configured() {
		if ghActs.Clients, err = gh.NewClients(cfg.GitHub); err != nil {
			return err
		}
		log.Info("GitHub reporting enabled", "api", ghActs.Clients.BaseURL(), "auth", ghActs.Clients.Mode())
	} else {
		log.Info("GitHub reporting disabled: no GITHUB_TOKEN or GITHUB_APP_ID (local mode)")
	}

	pc, err := pools.LoadFrom(cfg.RunnerPoolsFile, cfg.RunnerPools)
	if err != nil {
		return err
	}
	if len(pc.Pools) > 0 && ghActs.Clients == nil {
		return fmt.Errorf("runner pools (%s) register runners with GitHub: set GITHUB_TOKEN or GITHUB_APP_*", strings.Join(pc.Names(), ", "))
	}
	if cfg.ReconcileEvery < 0 || cfg.ReconcileGrace < 0 {
		return fmt.Errorf("RECONCILE_EVERY and RECONCILE_GRACE must not be negative")
	}

	machines := &activities.Machines{Client: dc, HeartbeatEvery: 2 * time.Second}
	reconciler := &activities.Reconciler{Dedalus: dc, Temporal: tc, Pools: pc, Grace: cfg.ReconcileGrace, Logger: log}
	if ghActs.Clients != nil {
		reconciler.Runners = activities.GitHubRunnerDirectory(ghActs.Clients)
	}
	w := worker.New(tc, workflows.TaskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(workflows.PreviewLifecycle, workflow.RegisterOptions{Name: workflows.PreviewLifecycleName})
	w.RegisterWorkflowWithOptions(workflows.RunnerPool, workflow.RegisterOptions{Name: runnerapi.RunnerPoolName})
	w.RegisterWorkflowWithOptions(workflows.RunnerProvision, workflow.RegisterOptions{Name: runnerapi.RunnerProvisionName})
	w.RegisterWorkflowWithOptions(workflows.RunnerJob, workflow.RegisterOptions{Name: runnerapi.RunnerJobName})
	w.RegisterWorkflowWithOptions(workflows.RunnerPrewarm, workflow.RegisterOptions{Name: workflows.RunnerPrewarmName})
	w.RegisterWorkflowWithOptions(workflows.Reconcile, workflow.RegisterOptions{Name: workflows.ReconcileName})
	w.RegisterActivity(machines)
	w.RegisterActivity(&activities.Runners{Machines: machines, GitHub: ghActs.Clients, Pools: pc, Temporal: tc, TaskQueue: workflows.TaskQueue, Logger: log})
	w.RegisterActivity(reconciler)
	w.RegisterActivity(&activities.Previews{
		DefaultSpecPath: cfg.PreviewDefaultSpec, PublicURLTemplate: cfg.PreviewPublicURL,
		StaleAfter: cfg.PreviewStaleAfter, KeepFailedMachine: cfg.PreviewKeepFailed,
	})
	w.RegisterActivity(ghActs)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Schedules live in Temporal; every worker start brings them in line with
	// this configuration (idempotent).
	if err := workflows.EnsurePoolSchedules(ctx, tc, pc); err != nil {
		return fmt.Errorf("runner pool schedules: %w", err)
	}
	if err := workflows.EnsureReconcileSchedule(ctx, tc, cfg.ReconcileEvery); err != nil {
		return fmt.Errorf("reconcile schedule: %w", err)
	}
	log.Info("worker polling", "task_queue", workflows.TaskQueue, "temporal", cfg.Temporal.Address,
		"namespace", cfg.Temporal.Namespace, "dedalus", dc.BaseURL())
	interrupt := make(chan any)
	go func() { <-ctx.Done(); close(interrupt) }()
	if err := w.Run(interrupt); err != nil {
		return fmt.Errorf("worker stopped: %w", err)
	}
	log.Info("worker stopped")
	return nil
}
