package router

import (
	"container/list"
	"errors"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/drydock-dev/drydock/internal/metrics"
)

// Defaults of the cold-path limits (Options.ColdRate, ColdBurst,
// MaxConcurrentWakes).
const (
	DefaultColdRate           = 2.0
	DefaultColdBurst          = 30
	DefaultMaxConcurrentWakes = 64
)

const (
	// maxClients bounds the clients whose cold-request budget is tracked
	// (about 100 bytes each); past it the least recently seen is forgotten,
	// which gives it a full budget again.
	maxClients = 65536
	// wakeCapRetryAfter is the Retry-After (seconds) of a 429 for too many
	// wakes in flight.
	wakeCapRetryAfter = "2"
)

// errWakeCap is a wake refused because MaxConcurrentWakes wakes are in
// flight; nothing was sent to Temporal.
var errWakeCap = errors.New("too many preview wakes in flight")

// clientRateError is a request refused because its client spent its
// cold-request budget; nothing was sent to Temporal.
type clientRateError struct{ retryAfter time.Duration }

func (e *clientRateError) Error() string { return "client cold-request budget spent" }

// admit returns the cache entry of t for a request, or refuses the request
// when serving it would send Temporal a wake its client has no budget for.
// A request costs one unit of its client's budget only when it may reach
// Temporal: its preview is not warm, no wake of it is in flight or paid for
// (by a request on its way to start one), and no "unknown" or "gone" answer
// is cached. Warm requests, requests joining a wake and requests answered
// from the cache are free, so a browser's parallel requests for a sleeping
// preview cost one unit. A refused request creates no cache entry, so
// random hosts cost no memory either.
func (rt *Router) admit(r *http.Request, t Target, now int64) (*preview, error) {
	rt.mu.RLock()
	p := rt.previews[t]
	rt.mu.RUnlock()
	if rt.coldLimit == nil {
		if p == nil {
			p = rt.lookup(t, now)
		}
		return p, nil
	}
	if rt.free(p, now) {
		return p, nil
	}
	client, _ := rt.clientAddr(r)
	if ok, wait := rt.coldLimit.allow(clientKey(client), now); !ok {
		// Another request may have created and claimed the entry since.
		rt.mu.RLock()
		p = rt.previews[t]
		rt.mu.RUnlock()
		if rt.free(p, now) {
			return p, nil
		}
		return nil, &clientRateError{wait}
	}
	if p == nil {
		p = rt.lookup(t, now)
	}
	p.claimed.Store(now)
	return p, nil
}

// free reports whether a request for p costs nothing: p is warm, a wake of
// it is in flight or claimed, or an answer for it is cached.
func (rt *Router) free(p *preview, now int64) bool {
	if p == nil {
		return false
	}
	if p.warm(now) != nil || p.waking.Load() > 0 || p.negative(now) != nil {
		return true
	}
	// A claim whose wake never ran (its request found the preview warm
	// after all) lapses after the longest a wake may take.
	at := p.claimed.Load()
	return at != 0 && now-at < int64(rt.flightLimit)
}

// acquireWake takes one of MaxConcurrentWakes slots without waiting;
// release gives it back.
func (rt *Router) acquireWake() bool {
	if rt.wakeSlots == nil {
		return true
	}
	select {
	case rt.wakeSlots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (rt *Router) releaseWake() {
	if rt.wakeSlots != nil {
		<-rt.wakeSlots
	}
}

// refused answers a request a limit refused (429 with Retry-After) and
// reports whether err was such a refusal.
func (rt *Router) refused(w http.ResponseWriter, t Target, err error) bool {
	var ce *clientRateError
	switch {
	case errors.As(err, &ce):
		rt.metrics.Refused(metrics.RefusedClientRate)
		secs := max(1, int(math.Ceil(ce.retryAfter.Seconds())))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeText(w, http.StatusTooManyRequests, "Too many requests for sleeping or unknown previews from your address. Retry in "+strconv.Itoa(secs)+"s.")
	case errors.Is(err, errWakeCap):
		rt.metrics.Refused(metrics.RefusedWakeCap)
		w.Header().Set("Retry-After", wakeCapRetryAfter)
		writeText(w, http.StatusTooManyRequests, "Too many previews are waking up right now; the preview of "+t.String()+" was not woken. Retry shortly.")
	default:
		return false
	}
	return true
}

// clientKey is what a client's budget is kept under: its IPv4 address, or
// the /64 of its IPv6 address (one host, or one subscriber, usually holds a
// whole /64).
func clientKey(a netip.Addr) netip.Prefix {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	p, _ := a.Prefix(a.BitLen()) // the zero Prefix for an invalid address: one shared budget
	return p
}

// coldLimiter is a token bucket per client, for at most max clients, least
// recently seen forgotten first.
type coldLimiter struct {
	perNano float64 // tokens per nanosecond
	burst   float64
	max     int

	mu  sync.Mutex
	m   map[netip.Prefix]*list.Element
	lru list.List // of *bucket, most recently seen at the front
}

type bucket struct {
	key    netip.Prefix
	tokens float64
	last   int64 // router clock of the last refill
}

func newColdLimiter(perSecond float64, burst, maxEntries int) *coldLimiter {
	return &coldLimiter{perNano: perSecond / 1e9, burst: float64(burst), max: maxEntries, m: make(map[netip.Prefix]*list.Element)}
}

// allow takes a token from key's bucket; when there is none it reports how
// long until there is one.
func (l *coldLimiter) allow(key netip.Prefix, now int64) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b *bucket
	if e, ok := l.m[key]; ok {
		l.lru.MoveToFront(e)
		b = e.Value.(*bucket)
		b.tokens = min(l.burst, b.tokens+float64(now-b.last)*l.perNano)
		b.last = now
	} else {
		if l.lru.Len() >= l.max {
			old := l.lru.Back()
			delete(l.m, old.Value.(*bucket).key)
			l.lru.Remove(old)
		}
		b = &bucket{key: key, tokens: l.burst, last: now}
		l.m[key] = l.lru.PushFront(b)
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.perNano)
}

// len is the number of clients tracked.
func (l *coldLimiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// errorPath is the drydock_router_requests_total path of a request a wake
// failed for.
func errorPath(err error) string {
	if errors.Is(err, errWakeCap) {
		return metrics.PathRefused
	}
	return metrics.PathError
}
