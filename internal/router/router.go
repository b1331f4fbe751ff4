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
	if err := opts.validate(); err != nil {
		return nil, err
	}
	rt := newRouterFrom(m, opts)
	if err := rt.setVisibility(opts); err != nil {
		return nil, err
	}
	if rt.transport == nil {
		rt.transport, rt.ownsTrans = defaultTransport(opts.UpstreamHeaderTimeout), true
	}
	rt.start()
	return rt, nil
}

// newRouterFrom is the router of m and opts (validated), without its
// visibility answers or its own transport, not yet started.
func newRouterFrom(m *Mapper, opts Options) *Router {
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
	return rt
}

// defaultTransport is the router's own transport when Options.Transport is
// nil: a clone of http.DefaultTransport with a larger idle pool.
func defaultTransport(headerTimeout time.Duration) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 256
	t.ResponseHeaderTimeout = headerTimeout
	return t
}

// setVisibility sets the login and the visibility answers of opts: the
// Waker answers visibility when Options.Visibility is nil.
func (rt *Router) setVisibility(opts Options) error {
	rt.auth, rt.visQ, rt.visTTL = opts.Auth, opts.Visibility, int64(opts.VisibilityTTL)
	if rt.visQ == nil {
		vq, ok := opts.Waker.(VisibilityQuerier)
		if !ok {
			return errors.New("router: a VisibilityQuerier is required (Options.Visibility, or a Waker that implements it)")
		}
		rt.visQ = vq
	}
	if rt.visTTL <= 0 {
		rt.visTTL = int64(DefaultVisibilityTTL)
	}
	return nil
}

// start starts the router's clock and its touch workers.
func (rt *Router) start() {
	epoch := time.Now()
	rt.clock = func() int64 { return int64(time.Since(epoch)) + 1 }
	rt.ctx, rt.cancel = context.WithCancel(context.Background())
	for range touchWorkers {
		rt.wg.Add(1)
		go rt.touchLoop()
	}
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
