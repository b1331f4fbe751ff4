package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/drydock-dev/drydock/internal/metrics"
	"github.com/drydock-dev/drydock/internal/previewauth"
)

// Defaults for Options.
const (
	DefaultWakeTimeout = 30 * time.Second
	DefaultAwakeTTL    = 10 * time.Second
	DefaultTouchEvery  = time.Minute

	DefaultUpstreamHeaderTimeout = time.Minute
	DefaultUpgradeIdleTimeout    = 10 * time.Minute
)

// Options configure a Router.
type Options struct {
	// Domain is the preview domain: pr-<n>.<Domain> (required).
	Domain string
	// DefaultRepo ("owner/repo") is the repository of pr-<n>.<Domain>;
	// empty allows only the multi-repository host and header forms.
	DefaultRepo string
	// Waker wakes previews (required); NewTemporalWaker in production.
	Waker Waker
	// WakeTimeout is how long a request waits for its preview to wake
	// before it is answered 503 with Retry-After. The wake itself may run
	// on for as long again, so a retry finds it done.
	WakeTimeout time.Duration
	// AwakeTTL is how long after a wake the preview is taken to be awake
	// without asking Temporal.
	AwakeTTL time.Duration
	// TouchEvery is the least interval between two touches of one preview.
	TouchEvery time.Duration
	// Ready is the readiness check of /readyz (nil: always ready).
	Ready func(context.Context) error
	// Transport carries requests to the previews (nil: a clone of
	// http.DefaultTransport with a larger idle pool).
	Transport http.RoundTripper
	// Logger receives one line per cold wake and per failure (nil: discard).
	Logger *slog.Logger
	// TrustedProxies are the proxies in front of the router (load
	// balancers) whose X-Forwarded-For, -Proto and -Host are believed;
	// see ParseTrustedProxies. Empty: none, the peer is the client.
	TrustedProxies []netip.Prefix
	// ColdRate and ColdBurst are each client's budget of requests that may
	// send Temporal a wake (a token bucket: ColdRate per second, up to
	// ColdBurst at once; see admit). 0: DefaultColdRate, DefaultColdBurst;
	// a negative ColdRate: no per-client limit.
	ColdRate  float64
	ColdBurst int
	// MaxConcurrentWakes caps the wakes in flight to Temporal across all
	// previews; a wake past it is refused at once (429). 0:
	// DefaultMaxConcurrentWakes; negative: no cap.
	MaxConcurrentWakes int
	// UpstreamHeaderTimeout is how long a preview may take to send its
	// response headers before the request is answered 504 (0:
	// DefaultUpstreamHeaderTimeout). It applies to the router's own
	// transport, not to Transport.
	UpstreamHeaderTimeout time.Duration
	// UpgradeIdleTimeout closes an upgraded connection (a WebSocket) on
	// both sides when no byte has passed either way for this long (0:
	// DefaultUpgradeIdleTimeout; negative: never).
	UpgradeIdleTimeout time.Duration
	// Metrics counts requests by path (warm, cold, error), the latency the
	// router adds, and its wakes (nil: none).
	Metrics *metrics.Router
	// Auth is the GitHub login that non-public previews require (nil:
	// login is not configured, and only public previews are served).
	Auth *previewauth.Auth
	// Visibility answers each preview's visibility (nil: the Waker, which
	// must then implement VisibilityQuerier); VisibilityTTL is how long an
	// answer is reused (0: DefaultVisibilityTTL). See auth.go.
	Visibility    VisibilityQuerier
	VisibilityTTL time.Duration
}

// validate checks opts and fills in the defaults of the options left unset.
func (opts *Options) validate() error {
	if opts.Waker == nil {
		return errors.New("router: a Waker is required")
	}
	for name, d := range map[string]*time.Duration{
		"wake timeout": &opts.WakeTimeout, "awake TTL": &opts.AwakeTTL, "touch interval": &opts.TouchEvery,
		"upstream header timeout": &opts.UpstreamHeaderTimeout,
	} {
		if *d < 0 {
			return fmt.Errorf("router: %s %v is negative", name, *d)
		}
	}
	orDefault(&opts.WakeTimeout, DefaultWakeTimeout)
	orDefault(&opts.AwakeTTL, DefaultAwakeTTL)
	orDefault(&opts.TouchEvery, DefaultTouchEvery)
	orDefault(&opts.ColdRate, DefaultColdRate)
	orDefault(&opts.ColdBurst, DefaultColdBurst)
	if opts.ColdRate > 0 && opts.ColdBurst < 1 {
		return fmt.Errorf("router: cold burst %d: want at least 1", opts.ColdBurst)
	}
	orDefault(&opts.UpstreamHeaderTimeout, DefaultUpstreamHeaderTimeout)
	orDefault(&opts.UpgradeIdleTimeout, DefaultUpgradeIdleTimeout)
	orDefault(&opts.MaxConcurrentWakes, DefaultMaxConcurrentWakes)
	return nil
}

// orDefault sets *v to def when it is the zero value (the option unset).
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
