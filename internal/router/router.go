// Package router is Drydock's preview router: an HTTP server in front of the
// preview machines. It maps each request to a pull request by its host (or,
// locally, by headers), wakes the preview's machine through its
// PreviewLifecycle workflow when it is not known to be awake, and proxies the
// request to the machine's preview URL: streaming responses, Server-Sent
// Events, WebSocket upgrades and request bodies included.
//
// A warm request (the preview was woken within the awake TTL) costs a map
// lookup and one proxy hop; Temporal is not asked. A cold request sends one
// wake Update per preview at a time however many requests wait for it; the
// workflow itself serializes wakes across router replicas. Once awake, the
// requests that waited go to the preview a bounded number at a time
// (release.go). Traffic is
// reported to the workflow (SignalTouch) at most once per interval per
// preview, off the request path.
package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

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

const (
	// negativeTTL is how long a "no such preview" or "torn down" answer is
	// reused, so that a browser tab polling a closed preview does not send
	// Temporal a request each time.
	negativeTTL = 5 * time.Second
	// touchWorkers and touchQueue bound the goroutines and the backlog of
	// Touch calls; a touch that does not fit is retried by a later request.
	touchWorkers = 2
	touchQueue   = 256
	touchTimeout = 10 * time.Second
	// Idle previews leave the cache (they are woken again on the next
	// request): those never woken after a minute, the others after ten.
	evictNeverWoken = time.Minute
	evictIdle       = 10 * time.Minute
	sweepEvery      = 10 * time.Second
	// appUnavailableGrace: a 503 this soon after a wake is the app's own
	// answer (a dev server still compiling), not a machine that fell asleep,
	// and is passed through without another wake. It exceeds the time in
	// which PreviewLifecycle answers a wake without waking again (2s), so a
	// wake the router does send is a real one.
	appUnavailableGrace = 3 * time.Second
	// retryAfter is the Retry-After (seconds) of the router's own 503s.
	retryAfter = "5"
	// readyTimeout bounds a /readyz check.
	readyTimeout = 3 * time.Second
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

// Router is the preview router's http.Handler. Requests whose host is not a
// preview host and that carry no preview headers get the router's own
// endpoints: /healthz, /readyz, and a 404 page explaining the host patterns.
type Router struct {
	mapper      *Mapper
	waker       Waker
	ready       func(context.Context) error
	log         *slog.Logger
	metrics     *metrics.Router
	transport   http.RoundTripper
	ownsTrans   bool
	wakeTimeout time.Duration
	flightLimit time.Duration
	awakeTTL    int64 // nanoseconds
	touchEvery  int64 // nanoseconds

	trustedProxies []netip.Prefix
	coldLimit      *coldLimiter  // nil: no per-client limit
	wakeSlots      chan struct{} // nil: no cap on wakes in flight
	upgradeIdle    time.Duration // 0: upgraded connections are never closed for idleness

	auth   *previewauth.Auth
	visQ   VisibilityQuerier
	visTTL int64 // nanoseconds

	// clock is the router's monotonic time in nanoseconds, never 0 (0 means
	// "never" in preview's fields). Tests replace it.
	clock func() int64

	mu        sync.RWMutex
	previews  map[Target]*preview
	lastSweep int64 // guarded by mu

	flights singleflight.Group
	buffers *bufferPool
	// releaseWidth and releaseHold shape each preview's releaser
	// (release.go); tests change them.
	releaseWidth int
	releaseHold  time.Duration
	touchq       chan *preview

	ctx    context.Context // canceled by Close: ends wakes in flight and touches
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// preview is the router's cached knowledge of one pull request's preview.
// The warm path reads only atomics.
type preview struct {
	target     Target
	id         string // workflow ID
	up         atomic.Pointer[upstream]
	awakeUntil atomic.Int64 // router clock; the preview is warm before it
	wokenAt    atomic.Int64 // router clock of the last successful wake
	lastTouch  atomic.Int64 // router clock of the last touch queued; 0: never
	lastSeen   atomic.Int64 // router clock of the last request
	waking     atomic.Int32 // wakes of it in flight to Temporal
	waiters    atomic.Int32 // requests waiting for a wake of it
	claimed    atomic.Int64 // router clock when a request paid for its next wake (admit); 0: none pending
	vis        atomic.Pointer[visEntry]
	release    *releaser // the requests that waited for a wake go through it (release.go)

	mu       sync.Mutex // guards the negative answer
	negUntil int64
	negErr   error
}

// warm returns the upstream while the preview is known to be awake.
func (p *preview) warm(now int64) *upstream {
	if u := p.up.Load(); u != nil && now < p.awakeUntil.Load() {
		return u
	}
	return nil
}

func (p *preview) markCold() { p.awakeUntil.Store(0) }

func (p *preview) negative(now int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now < p.negUntil {
		return p.negErr
	}
	return nil
}

func (p *preview) setNegative(until int64, err error) {
	p.mu.Lock()
	p.negUntil, p.negErr = until, err
	p.mu.Unlock()
}

// New validates opts and starts the router's touch workers; Close stops them.
func New(opts Options) (*Router, error) {
	m, err := NewMapper(opts.Domain, opts.DefaultRepo)
	if err != nil {
		return nil, err
	}
	if opts.Waker == nil {
		return nil, errors.New("router: a Waker is required")
	}
	for name, d := range map[string]*time.Duration{
		"wake timeout": &opts.WakeTimeout, "awake TTL": &opts.AwakeTTL, "touch interval": &opts.TouchEvery,
		"upstream header timeout": &opts.UpstreamHeaderTimeout,
	} {
		if *d < 0 {
			return nil, fmt.Errorf("router: %s %v is negative", name, *d)
		}
	}
	orDefault(&opts.WakeTimeout, DefaultWakeTimeout)
	orDefault(&opts.AwakeTTL, DefaultAwakeTTL)
	orDefault(&opts.TouchEvery, DefaultTouchEvery)
	orDefault(&opts.ColdRate, DefaultColdRate)
	orDefault(&opts.ColdBurst, DefaultColdBurst)
	if opts.ColdRate > 0 && opts.ColdBurst < 1 {
		return nil, fmt.Errorf("router: cold burst %d: want at least 1", opts.ColdBurst)
	}
	orDefault(&opts.UpstreamHeaderTimeout, DefaultUpstreamHeaderTimeout)
	orDefault(&opts.UpgradeIdleTimeout, DefaultUpgradeIdleTimeout)
	orDefault(&opts.MaxConcurrentWakes, DefaultMaxConcurrentWakes)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	rt := &Router{
		mapper:      m,
		waker:       opts.Waker,
		ready:       opts.Ready,
		log:         log,
		metrics:     opts.Metrics,
		transport:   opts.Transport,
		wakeTimeout: opts.WakeTimeout,
		flightLimit: 2 * opts.WakeTimeout,
		awakeTTL:    int64(opts.AwakeTTL),
		touchEvery:  int64(opts.TouchEvery),

		trustedProxies: opts.TrustedProxies,
		previews:       make(map[Target]*preview),
		touchq:         make(chan *preview, touchQueue),
		buffers:        newBufferPool(),
		releaseWidth:   releaseWidth,
		releaseHold:    releaseHold,
	}
	if opts.UpgradeIdleTimeout > 0 {
		rt.upgradeIdle = opts.UpgradeIdleTimeout
	}
	if opts.ColdRate > 0 {
		rt.coldLimit = newColdLimiter(opts.ColdRate, opts.ColdBurst, maxClients)
	}
	if opts.MaxConcurrentWakes > 0 {
		rt.wakeSlots = make(chan struct{}, opts.MaxConcurrentWakes)
	}
	rt.auth, rt.visQ, rt.visTTL = opts.Auth, opts.Visibility, int64(opts.VisibilityTTL)
	if rt.visQ == nil {
		vq, ok := opts.Waker.(VisibilityQuerier)
		if !ok {
			return nil, errors.New("router: a VisibilityQuerier is required (Options.Visibility, or a Waker that implements it)")
		}
		rt.visQ = vq
	}
	if rt.visTTL <= 0 {
		rt.visTTL = int64(DefaultVisibilityTTL)
	}
	if rt.transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = 1024
		t.MaxIdleConnsPerHost = 256
		t.ResponseHeaderTimeout = opts.UpstreamHeaderTimeout
		rt.transport, rt.ownsTrans = t, true
	}
	epoch := time.Now()
	rt.clock = func() int64 { return int64(time.Since(epoch)) + 1 }
	rt.ctx, rt.cancel = context.WithCancel(context.Background())
	for range touchWorkers {
		rt.wg.Add(1)
		go rt.touchLoop()
	}
	return rt, nil
}

// Mapper returns the router's request-to-pull-request mapping.
func (rt *Router) Mapper() *Mapper { return rt.mapper }

// Close stops the touch workers and cancels wakes in flight. Call it after
// the HTTP server has shut down.
func (rt *Router) Close() {
	rt.once.Do(func() {
		rt.cancel()
		rt.wg.Wait()
		if t, ok := rt.transport.(*http.Transport); ok && rt.ownsTrans {
			t.CloseIdleConnections()
		}
	})
}

// ServeHTTP routes one request.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rt.auth != nil && rt.auth.IsAuthHost(r.Host) {
		// Before mapping: the header form (X-Drydock-Repo) must not serve
		// a preview under the auth host's origin.
		rt.auth.ServeHTTP(w, r)
		return
	}
	t, m := rt.mapper.Map(r)
	switch m {
	case matchNone:
		rt.serveOwn(w, r)
		return
	case matchBad:
		rt.writePage(w, r, http.StatusNotFound, pageNoPreview, Target{})
		return
	}
	tr := &track{start: time.Now(), path: metrics.PathWarm}
	now := rt.clock()
	p, err := rt.admit(r, t, now)
	if err != nil {
		rt.metrics.Request(metrics.PathRefused, 0, false)
		rt.refused(w, t, err)
		return
	}
	p.lastSeen.Store(now)
	if !rt.gate(w, r, p, now) {
		return // refused: no wake, no touch, not activity
	}
	u := p.warm(now)
	if u == nil {
		tr.path = metrics.PathCold
		if u, err = rt.wake(r.Context(), p); err != nil {
			rt.metrics.Request(errorPath(err), 0, false)
			rt.writeWakeError(w, r, p.target, err)
			return
		}
		r = r.WithContext(withCold(r.Context()))
	}
	rt.touch(p, now)
	if rt.metrics == nil {
		u.proxy.ServeHTTP(w, r)
		return
	}
	u.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), trackKey{}, tr)))
	rt.metrics.Request(tr.path, tr.sent.Sub(tr.start), !tr.sent.IsZero())
}

// track is what the metrics learn of one proxied request: its path (warm,
// cold, error) and when it was sent to the preview (the last attempt).
type track struct {
	start, sent time.Time
	path        string
}

type trackKey struct{}

// trackOf is the request's track, nil without metrics.
func trackOf(ctx context.Context) *track {
	tr, _ := ctx.Value(trackKey{}).(*track)
	return tr
}

// lookup returns the cache entry of t, creating it (and evicting idle
// entries, at most every sweepEvery) when there is none.
func (rt *Router) lookup(t Target, now int64) *preview {
	rt.mu.RLock()
	p := rt.previews[t]
	rt.mu.RUnlock()
	if p != nil {
		return p
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if p = rt.previews[t]; p != nil {
		return p
	}
	if now-rt.lastSweep >= int64(sweepEvery) {
		rt.lastSweep = now
		idle := max(int64(evictIdle), 2*rt.touchEvery)
		for k, q := range rt.previews {
			seen := now - q.lastSeen.Load()
			if seen > idle || q.up.Load() == nil && seen > int64(evictNeverWoken) {
				delete(rt.previews, k)
			}
		}
	}
	p = &preview{target: t, id: t.WorkflowID(), release: newReleaser(rt.releaseWidth, rt.releaseHold)}
	p.lastSeen.Store(now) // before any other sweep can see it
	rt.previews[t] = p
	return p
}

// errWakeWait is a request that waited WakeTimeout for its preview.
var errWakeWait = fmt.Errorf("%w: the preview did not wake within the wake timeout", ErrUnavailable)

// wake returns p's upstream once p is awake: it joins the wake in flight for
// p or starts one, and waits up to WakeTimeout for it.
func (rt *Router) wake(ctx context.Context, p *preview) (*upstream, error) {
	if err := p.negative(rt.clock()); err != nil {
		return nil, err
	}
	p.waiters.Add(1)
	defer p.waiters.Add(-1)
	ch := rt.flights.DoChan(p.id, func() (any, error) { return rt.doWake(p) })
	timer := time.NewTimer(rt.wakeTimeout)
	defer timer.Stop()
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*upstream), nil
	case <-timer.C:
		return nil, errWakeWait
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// wakeInBackground starts (or joins) a wake nobody waits for, so that the
// client's retry of a request the router could not retry finds it awake.
func (rt *Router) wakeInBackground(p *preview) {
	rt.flights.DoChan(p.id, func() (any, error) { return rt.doWake(p) })
}

// doWake is the one wake in flight for p. It runs detached from the
// requests waiting on it, so a client that goes away does not cancel the
// wake for the others, and it may outlive their wait: a retry then finds the
// preview warm.
func (rt *Router) doWake(p *preview) (any, error) {
	defer p.claimed.Store(0) // the next request for a cold preview pays again
	now := rt.clock()
	// A request that saw the preview cold just before the previous wake
	// finished starts a new flight; it needs no second wake.
	if u := p.warm(now); u != nil {
		return u, nil
	}
	if err := p.negative(now); err != nil {
		return nil, err
	}
	if !rt.acquireWake() {
		rt.log.Debug("preview wake refused: too many wakes in flight", "workflow_id", p.id)
		return nil, errWakeCap
	}
	defer rt.releaseWake()
	p.waking.Add(1)
	defer p.waking.Add(-1)
	ctx, cancel := context.WithTimeout(rt.ctx, rt.flightLimit)
	defer cancel()
	start := time.Now()
	res, err := rt.waker.Wake(ctx, p.id)
	latency := time.Since(start)
	rt.metrics.Wake(wakeResult(err), latency)
	if err != nil {
		switch {
		case errors.Is(err, ErrUnknownPreview), errors.Is(err, ErrPreviewGone):
			p.setNegative(rt.clock()+int64(negativeTTL), err)
			rt.log.Info("preview wake refused", "workflow_id", p.id, "latency", latency, "err", err)
		default:
			rt.log.Warn("preview wake failed", "workflow_id", p.id, "latency", latency, "err", err)
		}
		return nil, err
	}
	u, err := rt.upstreamFor(p, res.URL)
	if err != nil {
		rt.log.Warn("preview wake failed", "workflow_id", p.id, "latency", latency, "err", err)
		return nil, err
	}
	now = rt.clock()
	p.wokenAt.Store(now)
	p.awakeUntil.Store(now + rt.awakeTTL)
	rt.log.Info("preview woken", "workflow_id", p.id, "machine_id", res.MachineID, "latency", latency)
	return u, nil
}

// wakeResult names a wake's outcome for drydock_router_wakes_total.
func wakeResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrUnknownPreview):
		return "unknown"
	case errors.Is(err, ErrPreviewGone):
		return "gone"
	case errors.Is(err, ErrNotReady):
		return "not_ready" // still deploying: answered as designed, not a failure
	}
	return "error"
}

// touch queues a Touch of p unless one was queued within TouchEvery. It
// never blocks: when the queue is full the touch is left to a later request.
func (rt *Router) touch(p *preview, now int64) {
	last := p.lastTouch.Load()
	if last != 0 && now-last < rt.touchEvery {
		return
	}
	if !p.lastTouch.CompareAndSwap(last, now) {
		return // another request is touching it
	}
	select {
	case rt.touchq <- p:
	default:
		p.lastTouch.CompareAndSwap(now, last)
	}
}

func (rt *Router) touchLoop() {
	defer rt.wg.Done()
	for {
		select {
		case <-rt.ctx.Done():
			return
		case p := <-rt.touchq:
			ctx, cancel := context.WithTimeout(rt.ctx, touchTimeout)
			if err := rt.waker.Touch(ctx, p.id); err != nil && rt.ctx.Err() == nil {
				rt.log.Warn("preview touch failed", "workflow_id", p.id, "err", err)
			}
			cancel()
		}
	}
}

// serveOwn answers requests that name no preview.
func (rt *Router) serveOwn(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		writeText(w, http.StatusOK, "ok")
	case "/readyz":
		if rt.ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			defer cancel()
			if err := rt.ready(ctx); err != nil {
				rt.log.Debug("not ready", "err", err)
				// A fixed answer: the reason (addresses, TLS errors) is for
				// the admin listener's /readyz and the log.
				writeText(w, http.StatusServiceUnavailable, "not ready")
				return
			}
		}
		writeText(w, http.StatusOK, "ready")
	default:
		rt.writePage(w, r, http.StatusNotFound, pageNoPreview, Target{})
	}
}

// writeWakeError answers a request whose preview could not be woken.
func (rt *Router) writeWakeError(w http.ResponseWriter, r *http.Request, t Target, err error) {
	if rt.refused(w, t, err) {
		return
	}
	switch {
	case errors.Is(err, ErrUnknownPreview):
		rt.writePage(w, r, http.StatusNotFound, pageUnknown, t)
	case errors.Is(err, ErrPreviewGone):
		rt.writePage(w, r, http.StatusGone, pageGone, t)
	case errors.Is(err, errWakeWait), errors.Is(err, ErrNotReady):
		w.Header().Set("Retry-After", retryAfter)
		rt.writePage(w, r, http.StatusServiceUnavailable, pageStarting, t)
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		w.WriteHeader(http.StatusServiceUnavailable)
	case errors.Is(err, ErrUnavailable):
		w.Header().Set("Retry-After", retryAfter)
		writeText(w, http.StatusServiceUnavailable, "The preview of "+t.String()+" cannot be woken right now (Drydock's workflow service is unavailable). Retry shortly.")
	default:
		writeText(w, http.StatusBadGateway, "The preview of "+t.String()+" could not be woken: it failed to deploy or start. See the pull request for details.")
	}
}

func writeText(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

// orDefault sets *v to def when it is the zero value (the option unset).
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
