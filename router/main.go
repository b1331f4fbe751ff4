// Command router is Drydock's preview router: it serves every pull request's
// preview environment on its own host (pr-<n>.<PREVIEW_DOMAIN>, or
// pr-<n>--<owner>--<repo>.<PREVIEW_DOMAIN>), waking the preview's machine
// through Temporal when needed. Requests for other hosts get liveness
// (/healthz) and readiness (/readyz, which checks Temporal).
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/internal/config"
	"github.com/drydock-dev/drydock/internal/metrics"
	"github.com/drydock-dev/drydock/internal/profiler"
	"github.com/drydock-dev/drydock/internal/router"
)

// Config is the preview router's configuration.
type Config struct {
	Temporal    config.Temporal `envconfig:"TEMPORAL"`
	Addr        string          `envconfig:"ROUTER_ADDR" default:"127.0.0.1:8090" desc:"listen address of the preview router"`
	Domain      string          `envconfig:"PREVIEW_DOMAIN" default:"preview.localhost" desc:"preview hosts are pr-<n>.<domain> and pr-<n>--<owner>--<repo>.<domain>"`
	DefaultRepo string          `envconfig:"PREVIEW_DEFAULT_REPO" desc:"owner/repo that pr-<n>.<domain> names (empty: only the multi-repository form)"`
	WakeTimeout time.Duration   `envconfig:"ROUTER_WAKE_TIMEOUT" default:"30s" desc:"how long a request waits for its preview to wake before a 503 with Retry-After"`
	AwakeTTL    time.Duration   `envconfig:"ROUTER_AWAKE_TTL" default:"10s" desc:"how long after a wake requests are proxied without asking Temporal"`
	TouchEvery  time.Duration   `envconfig:"ROUTER_TOUCH_EVERY" default:"1m" desc:"least interval between two activity reports (touch signals) for one preview"`
	LogLevel    string          `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`

	// Hardening (see docs/previews.md, "Router hardening").
	TrustedProxies     []string `envconfig:"ROUTER_TRUSTED_PROXIES" desc:"comma-separated CIDR prefixes (or addresses) of the proxies in front of the router whose X-Forwarded-For/-Proto/-Host are believed; empty: none, the peer is the client"`
	ColdRate           float64  `envconfig:"ROUTER_COLD_RATE" default:"2" desc:"requests per second and client address (IPv6: per /64) that may wake a sleeping or unknown preview; past it (and ROUTER_COLD_BURST) 429; 0: no limit"`
	ColdBurst          int      `envconfig:"ROUTER_COLD_BURST" default:"30" desc:"how many such requests a client may send at once before ROUTER_COLD_RATE applies"`
	MaxConcurrentWakes int      `envconfig:"ROUTER_MAX_CONCURRENT_WAKES" default:"64" desc:"wakes in flight to Temporal at once, all previews together; past it 429; 0: no cap"`

	UpstreamHeaderTimeout time.Duration `envconfig:"ROUTER_UPSTREAM_HEADER_TIMEOUT" default:"60s" desc:"how long a preview may take to send its response headers before 504"`
	UpgradeIdleTimeout    time.Duration `envconfig:"ROUTER_UPGRADE_IDLE_TIMEOUT" default:"10m" desc:"an upgraded connection (WebSocket) with no bytes either way for this long is closed on both sides; 0: never"`

	// Login for non-public previews (router/auth.go).
	Login

	MetricsAddr     string        `envconfig:"ROUTER_METRICS_ADDR" default:"127.0.0.1:9092" desc:"listen address of /metrics, /healthz and /readyz (keep it off the public load balancer); empty: none"`
	Pprof           bool          `envconfig:"ROUTER_PPROF" default:"false" desc:"also serve Go's profiler at /debug/pprof/ on ROUTER_METRICS_ADDR (CPU profiles, heap, execution traces: make bench -pprof); keep that listener private"`
	ShutdownDelay   time.Duration `envconfig:"ROUTER_SHUTDOWN_DELAY" default:"0s" desc:"on SIGTERM, how long to keep accepting while /readyz says 503 (behind a load balancer: its probe interval, e.g. 5s)"`
	ShutdownTimeout time.Duration `envconfig:"ROUTER_SHUTDOWN_TIMEOUT" default:"10s" desc:"on SIGTERM, how long requests in flight may take to finish before streams still open are cut"`
}

func main() {
	var cfg Config
	config.Main("router", "serves preview environments, waking their machines on demand", &cfg, func() error { return run(cfg) })
}

// validate names the variable at fault.
func (c Config) validate() error {
	if err := c.Temporal.Validate(); err != nil {
		return err
	}
	if err := config.CheckAddrs("ROUTER_ADDR", c.Addr, "ROUTER_METRICS_ADDR", c.MetricsAddr); err != nil {
		return err
	}
	if err := c.checkDurations(); err != nil {
		return err
	}
	if err := c.checkLimits(); err != nil {
		return err
	}
	if err := c.Login.validate(); err != nil {
		return err
	}
	if _, err := router.NewMapper(c.Domain, ""); err != nil {
		return fmt.Errorf("configuration: PREVIEW_DOMAIN: %w", err)
	}
	if _, err := router.NewMapper(c.Domain, c.DefaultRepo); err != nil {
		return fmt.Errorf("configuration: PREVIEW_DEFAULT_REPO: %w", err)
	}
	return nil
}

// checkDurations refuses timeouts that are not positive and a negative
// shutdown delay.
func (c Config) checkDurations() error {
	for name, d := range map[string]time.Duration{
		"ROUTER_WAKE_TIMEOUT": c.WakeTimeout, "ROUTER_AWAKE_TTL": c.AwakeTTL, "ROUTER_TOUCH_EVERY": c.TouchEvery,
		"ROUTER_SHUTDOWN_TIMEOUT": c.ShutdownTimeout, "ROUTER_UPSTREAM_HEADER_TIMEOUT": c.UpstreamHeaderTimeout,
	} {
		if d <= 0 {
			return fmt.Errorf("configuration: %s=%v: want a positive duration such as 30s", name, d)
		}
	}
	if c.ShutdownDelay < 0 {
		return fmt.Errorf("configuration: ROUTER_SHUTDOWN_DELAY=%s must not be negative", c.ShutdownDelay)
	}
	return nil
}

// checkLimits checks the hardening settings: the cold path's rate and
// caps, the upgraded connections' idle timeout and the trusted proxies.
func (c Config) checkLimits() error {
	if c.ColdRate < 0 || math.IsNaN(c.ColdRate) || math.IsInf(c.ColdRate, 0) {
		return fmt.Errorf("configuration: ROUTER_COLD_RATE=%v: want requests per second, 0 or more (0: no limit)", c.ColdRate)
	}
	if c.ColdRate > 0 && c.ColdBurst < 1 {
		return fmt.Errorf("configuration: ROUTER_COLD_BURST=%d: want 1 or more", c.ColdBurst)
	}
	if c.UpgradeIdleTimeout < 0 {
		return fmt.Errorf("configuration: ROUTER_UPGRADE_IDLE_TIMEOUT=%s must not be negative (0: never)", c.UpgradeIdleTimeout)
	}
	if c.MaxConcurrentWakes < 0 {
		return fmt.Errorf("configuration: ROUTER_MAX_CONCURRENT_WAKES=%d: want 0 (no cap) or more", c.MaxConcurrentWakes)
	}
	if _, err := router.ParseTrustedProxies(c.TrustedProxies); err != nil {
		return fmt.Errorf("configuration: ROUTER_TRUSTED_PROXIES: %w", err)
	}
	return nil
}

// orNone maps a setting's 0 ("no limit") to the router's negative.
func orNone(v float64) float64 {
	if v == 0 {
		return -1
	}
	return v
}

// newRouter makes the preview router: host mapping, the login (when
// configured), the Temporal waker and the limits of the cold path.
func newRouter(cfg Config, tc client.Client, reg *metrics.Registry, health *metrics.Health, log *slog.Logger) (*router.Router, error) {
	trusted, _ := router.ParseTrustedProxies(cfg.TrustedProxies) // validated
	mapper, err := router.NewMapper(cfg.Domain, cfg.DefaultRepo)
	if err != nil {
		return nil, err
	}
	auth, err := cfg.Login.auth(mapper, log)
	if err != nil {
		return nil, err
	}
	if auth != nil {
		log.Info("preview login configured: org and private previews need a GitHub sign-in", "auth_host", auth.AuthHost(),
			"callback_url", auth.CallbackURL(), "github", cfg.GitHubURL)
	} else {
		log.Warn("preview login is not configured (ROUTER_GITHUB_CLIENT_ID): only public previews are served; org and private ones answer 403")
	}
	rt, err := router.New(router.Options{
		Domain:        cfg.Domain,
		DefaultRepo:   cfg.DefaultRepo,
		Waker:         router.NewTemporalWaker(tc),
		WakeTimeout:   cfg.WakeTimeout,
		AwakeTTL:      cfg.AwakeTTL,
		TouchEvery:    cfg.TouchEvery,
		Ready:         health.Ready,
		Logger:        log,
		Metrics:       metrics.NewRouter(reg),
		Auth:          auth,
		VisibilityTTL: cfg.AuthCacheTTL,

		TrustedProxies:     trusted,
		ColdRate:           orNone(cfg.ColdRate),
		ColdBurst:          cfg.ColdBurst,
		MaxConcurrentWakes: int(orNone(float64(cfg.MaxConcurrentWakes))),

		UpstreamHeaderTimeout: cfg.UpstreamHeaderTimeout,
		UpgradeIdleTimeout:    time.Duration(orNone(float64(cfg.UpgradeIdleTimeout))),
	})
	return rt, err
}

func run(cfg Config) error {
	if err := config.Load(&cfg); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	log, err := config.Logger(cfg.LogLevel)
	if err != nil {
		return err
	}
	reg := metrics.New("router")
	defer reg.Close()
	cfg.Temporal.MetricsHandler = reg.Temporal()
	tc, err := cfg.Temporal.DialLazy(log)
	if err != nil {
		return err
	}
	defer tc.Close()
	health := metrics.NewHealth(config.TemporalReady(tc))
	rt, err := newRouter(cfg, tc, reg, health, log)
	if err != nil {
		return err
	}
	defer rt.Close()
	ln, adminAddr, stopAdmin, err := config.Listen("ROUTER_ADDR", cfg.Addr, "ROUTER_METRICS_ADDR", cfg.MetricsAddr, profiler.Wrap(reg.Admin(health), cfg.Pprof))
	if err != nil {
		return err
	}
	defer stopAdmin()
	// No read or write timeout: previews stream (SSE, WebSockets, uploads).
	srv := &http.Server{Handler: rt, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	ctx, stop := config.SignalContext(health.Stopping)
	defer stop()
	example := "pr-<n>--<owner>--<repo>." + rt.Mapper().Domain()
	if cfg.DefaultRepo != "" {
		example = "pr-<n>." + rt.Mapper().Domain()
	}
	log.Info("preview router listening", "addr", ln.Addr().String(), "hosts", example, "default_repo", cfg.DefaultRepo,
		"temporal", cfg.Temporal.Describe(), "admin", adminAddr)
	// Stop accepting and let requests in flight finish; streams that are
	// still open after the grace period (SSE, WebSockets) are cut.
	err = config.Serve(ctx, srv, ln, cfg.ShutdownDelay, cfg.ShutdownTimeout)
	switch {
	case errors.Is(err, config.ErrGraceExpired):
		log.Warn("shutdown: closed the connections still open after the grace period (streams)", "grace", cfg.ShutdownTimeout)
	case err != nil:
		return err
	}
	log.Info("preview router stopped")
	return nil
}
