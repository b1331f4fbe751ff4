// Command webhook serves Drydock's GitHub webhook endpoint
// (POST /webhooks/github) with liveness (/healthz) and readiness (/readyz,
// which checks Temporal) probes. pull_request events start, update and tear
// down the preview workflows; workflow_job events start and signal the
// runner-pool workflows; other events are acknowledged.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/drydock-dev/drydock/internal/config"
	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/loopback"
	"github.com/drydock-dev/drydock/internal/metrics"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/profiler"
)

// Config is the webhook server's configuration.
type Config struct {
	Temporal    config.Temporal `envconfig:"TEMPORAL"`
	Addr        string          `envconfig:"WEBHOOK_ADDR" default:"127.0.0.1:8080" desc:"listen address of the webhook server"`
	Secret      string          `envconfig:"GITHUB_WEBHOOK_SECRET" desc:"the webhook secret configured on GitHub (required unless DRYDOCK_INSECURE_DEV)"`
	InsecureDev bool            `envconfig:"DRYDOCK_INSECURE_DEV" default:"false" desc:"accept unsigned deliveries when no secret is set (local development only: refused unless WEBHOOK_ADDR is a loopback address; requests must then name localhost or a loopback address as Host)"`
	LogLevel    string          `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`

	// Who may use Drydock (intake.Allowlist): required, fail closed.
	AllowedOwners []string `envconfig:"DRYDOCK_ALLOWED_OWNERS" desc:"required: comma-separated GitHub owners (users or organizations, any case) and installation:<id> entries whose events Drydock acts on (previews and runner jobs); * accepts everyone; others are answered 200 owner_not_allowed"`

	// Bounds on unauthenticated input (intake.Options).
	MaxBody             int64 `envconfig:"WEBHOOK_MAX_BODY_BYTES" default:"1048576" desc:"largest delivery body read, in bytes (real payloads are about 30 KB; at most GitHub's 25 MB); larger ones are answered 413 unread"`
	MaxConcurrentBodies int   `envconfig:"WEBHOOK_MAX_CONCURRENT_BODIES" default:"16" desc:"delivery bodies read at once before authentication (memory: this times WEBHOOK_MAX_BODY_BYTES); past it a delivery waits up to 1s, then gets 503 with Retry-After"`

	MetricsAddr     string        `envconfig:"WEBHOOK_METRICS_ADDR" default:"127.0.0.1:9091" desc:"listen address of /metrics, /healthz and /readyz (keep it off the public load balancer); empty: none"`
	Pprof           bool          `envconfig:"WEBHOOK_PPROF" default:"false" desc:"also serve Go's profiler at /debug/pprof/ on WEBHOOK_METRICS_ADDR (CPU profiles, heap, execution traces: make bench -pprof); keep that listener private"`
	ShutdownDelay   time.Duration `envconfig:"WEBHOOK_SHUTDOWN_DELAY" default:"0s" desc:"on SIGTERM, how long to keep accepting while /readyz says 503 (behind a load balancer: its probe interval, e.g. 5s)"`
	ShutdownTimeout time.Duration `envconfig:"WEBHOOK_SHUTDOWN_TIMEOUT" default:"10s" desc:"on SIGTERM, how long deliveries in flight may take to finish"`

	// Which pull requests get a preview (intake.PreviewPolicy).
	ForkLabel    string   `envconfig:"PREVIEW_FORK_LABEL" default:"preview" desc:"label a maintainer adds to give a fork's pull request a preview (and the opt-in label with PREVIEW_REQUIRE_LABEL); empty: forks never get one"`
	RequireLabel bool     `envconfig:"PREVIEW_REQUIRE_LABEL" default:"false" desc:"only pull requests carrying PREVIEW_FORK_LABEL get a preview: adding it starts one, removing it tears it down"`
	Drafts       bool     `envconfig:"PREVIEW_DRAFTS" default:"false" desc:"give draft pull requests a preview (otherwise they wait for ready_for_review)"`
	Repos        []string `envconfig:"PREVIEW_REPOS" desc:"comma-separated owner/repo allow-list; empty: every repository that sends events"`
	SkipBots     bool     `envconfig:"PREVIEW_SKIP_BOTS" default:"true" desc:"pull requests opened by bots (Dependabot, Renovate: author type Bot or login ending in [bot]) get no preview unless they carry PREVIEW_FORK_LABEL"`
	LocalClone   bool     `envconfig:"PREVIEW_LOCAL_CLONE_URLS" default:"false" desc:"also accept absolute local paths as clone URLs (local development with the emulator only)"`

	// Which workflow_job events a runner pool takes (pools.LoadFrom).
	RunnerPoolsFile string `envconfig:"RUNNER_POOLS_FILE" desc:"runner pools file (YAML or JSON), validated at start; excludes RUNNER_POOLS; neither: no pools, every job is left to other runners"`
	RunnerPools     string `envconfig:"RUNNER_POOLS" desc:"runner pools as inline JSON (or YAML), instead of RUNNER_POOLS_FILE"`
}

// validate checks the configuration without the network and names the
// variable at fault.
func (c Config) validate() error {
	if err := c.Temporal.Validate(); err != nil {
		return err
	}
	if c.Secret == "" && !c.InsecureDev {
		return errors.New("configuration: GITHUB_WEBHOOK_SECRET is empty: set it to the secret configured on GitHub (or DRYDOCK_INSECURE_DEV=true for local development only)")
	}
	if err := config.CheckAddrs("WEBHOOK_ADDR", c.Addr, "WEBHOOK_METRICS_ADDR", c.MetricsAddr); err != nil {
		return err
	}
	if c.InsecureDev {
		if err := loopback.CheckListen("WEBHOOK_ADDR", c.Addr); err != nil {
			return fmt.Errorf("configuration: DRYDOCK_INSECURE_DEV=true accepts deliveries from anyone who can reach the server, so it is refused on a reachable address: %w", err)
		}
	}
	if err := c.checkBounds(); err != nil {
		return err
	}
	if _, err := intake.ParseAllowlist(c.AllowedOwners); err != nil {
		return config.Invalid(err)
	}
	if err := c.policy().Validate(); err != nil {
		return config.Invalid(err)
	}
	if _, err := pools.LoadFrom(c.RunnerPoolsFile, c.RunnerPools); err != nil {
		return config.Invalid(err)
	}
	return nil
}

// checkBounds checks the shutdown timings and the bounds on delivery bodies.
func (c Config) checkBounds() error {
	if c.ShutdownDelay < 0 {
		return fmt.Errorf("configuration: WEBHOOK_SHUTDOWN_DELAY=%s must not be negative", c.ShutdownDelay)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("configuration: WEBHOOK_SHUTDOWN_TIMEOUT=%s: want a positive duration such as 10s", c.ShutdownTimeout)
	}
	if c.MaxBody < 1 || c.MaxBody > intake.MaxBody {
		return fmt.Errorf("configuration: WEBHOOK_MAX_BODY_BYTES=%d: want 1 to %d (GitHub's own cap on payloads)", c.MaxBody, intake.MaxBody)
	}
	if c.MaxConcurrentBodies < 1 {
		return fmt.Errorf("configuration: WEBHOOK_MAX_CONCURRENT_BODIES=%d: want a positive number such as 16", c.MaxConcurrentBodies)
	}
	return nil
}

// temporalClient is what the routers use of the Temporal client.
type temporalClient interface {
	intake.Temporal
	intake.JobTemporal
}

// policy is the preview policy the configuration describes.
func (c Config) policy() intake.PreviewPolicy {
	return intake.PreviewPolicy{Label: c.ForkLabel, RequireLabel: c.RequireLabel, Drafts: c.Drafts, Repos: c.Repos, SkipBots: c.SkipBots, LocalCloneURLs: c.LocalClone}
}

// newRouter routes pull_request events to the preview workflows and
// workflow_job events to the runner workflows, and acknowledges the rest;
// redelivered deliveries change nothing.
func newRouter(cfg Config, tc temporalClient, log *slog.Logger) (intake.Router, error) {
	prs, err := intake.NewPullRequests(intake.PullRequestOptions{Temporal: tc, Policy: cfg.policy(), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	pc, err := pools.LoadFrom(cfg.RunnerPoolsFile, cfg.RunnerPools)
	if err != nil {
		return nil, err
	}
	jobs, err := intake.NewWorkflowJobs(intake.WorkflowJobOptions{Temporal: tc, Pools: pc, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	log.Info("runner pools", "pools", strings.Join(pc.Names(), ","))
	mux := intake.NewMux()
	mux.Handle("pull_request", prs)
	mux.Handle("workflow_job", jobs)
	return intake.Dedupe(mux, intake.NewRecentDeliveries(intake.DefaultRecentDeliveries)), nil
}

// publicHandler is what WEBHOOK_ADDR serves: h, behind a Host check when
// DRYDOCK_INSECURE_DEV lets anyone post (a page on evil.example rebound to
// 127.0.0.1 is refused with 421: it cannot start previews on a developer's
// machine).
func publicHandler(cfg Config, h http.Handler) http.Handler {
	if cfg.InsecureDev {
		return loopback.Guard(h, cfg.Addr)
	}
	return h
}

// timeouts bound how long a client holds a connection, and one of the
// WEBHOOK_MAX_CONCURRENT_BODIES reading slots: it must send its headers
// within header and then its body at bodyRate bytes a second or better
// (slowloris), so 26s for a 1 MiB body by default; GitHub itself gives a
// delivery 10s. route is the time left to answer once the body is read.
type timeouts struct {
	header, route, idle time.Duration
	bodyRate            int64
}

var defaultTimeouts = timeouts{header: 10 * time.Second, route: 30 * time.Second, idle: 60 * time.Second, bodyRate: 64 << 10}

// newServer is the webhook's HTTP server: bounded headers, reading time
// sized for a maxBody body, idle keep-alive connections closed.
func newServer(h http.Handler, maxBody int64, t timeouts) *http.Server {
	read := t.header + time.Duration(maxBody)*time.Second/time.Duration(t.bodyRate)
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.header,
		ReadTimeout:       read,
		WriteTimeout:      read + t.route,
		IdleTimeout:       t.idle,
		MaxHeaderBytes:    64 << 10,
	}
}

func main() {
	var cfg Config
	config.Main("webhook", "serves the GitHub webhook endpoint: pull requests start, update and tear down previews; workflow jobs wake runner pools", &cfg, func() error { return run(cfg) })
}

// newHandler makes the webhook endpoint's handler: the allow-list, the
// routing of events to workflows, and the bounds on intake.
func newHandler(cfg Config, tc temporalClient, reg *metrics.Registry, health *metrics.Health, log *slog.Logger) (http.Handler, *intake.Allowlist, error) {
	wm := metrics.NewWebhook(reg)
	router, err := newRouter(cfg, tc, log)
	if err != nil {
		return nil, nil, err
	}
	allowed, err := intake.ParseAllowlist(cfg.AllowedOwners)
	if err != nil {
		return nil, nil, config.Invalid(err)
	}
	h, err := intake.New(intake.Options{
		Secret: cfg.Secret, Insecure: cfg.InsecureDev, Allowed: allowed, Router: router, Health: health, Logger: log, Metrics: wm,
		MaxBody: cfg.MaxBody, MaxConcurrentBodies: cfg.MaxConcurrentBodies,
	})
	if err != nil {
		return nil, nil, err
	}
	if allowed.Everyone() {
		log.Warn("DRYDOCK_ALLOWED_OWNERS=*: acting for every repository whose events reach this webhook")
	}
	if cfg.Secret == "" {
		log.Warn("DRYDOCK_INSECURE_DEV: accepting unsigned webhook deliveries; never do this on a reachable address")
	}
	return h, allowed, nil
}

func run(cfg Config) error {
	if err := config.Load(&cfg); err != nil {
		return err
	}
	log, err := config.Logger(cfg.LogLevel)
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	reg := metrics.New("webhook")
	defer reg.Close()
	cfg.Temporal.MetricsHandler = reg.Temporal()
	tc, err := cfg.Temporal.DialLazy(log)
	if err != nil {
		return err
	}
	defer tc.Close()
	health := metrics.NewHealth(config.TemporalReady(tc))
	h, allowed, err := newHandler(cfg, tc, reg, health, log)
	if err != nil {
		return err
	}
	ln, adminAddr, stopAdmin, err := config.Listen("WEBHOOK_ADDR", cfg.Addr, "WEBHOOK_METRICS_ADDR", cfg.MetricsAddr, profiler.Wrap(reg.Admin(health), cfg.Pprof))
	if err != nil {
		return err
	}
	defer stopAdmin()
	srv := newServer(publicHandler(cfg, h), cfg.MaxBody, defaultTimeouts)
	ctx, stop := config.SignalContext(health.Stopping)
	defer stop()
	log.Info("webhook server listening", "url", "http://"+ln.Addr().String()+"/webhooks/github", "temporal", cfg.Temporal.Describe(),
		"admin", adminAddr, "allowed_owners", allowed.String(), "fork_label", cfg.ForkLabel, "require_label", cfg.RequireLabel, "drafts", cfg.Drafts, "repos", strings.Join(cfg.Repos, ","))
	// SIGTERM: stop accepting, let deliveries in flight finish (bounded).
	if err := config.Serve(ctx, srv, ln, cfg.ShutdownDelay, cfg.ShutdownTimeout); err != nil {
		return err
	}
	log.Info("webhook server stopped")
	return nil
}
