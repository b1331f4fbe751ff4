package router

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/metrics"
)

// A client that asks for many sleeping or unknown previews (random hosts)
// spends its budget: past it, 429 with Retry-After and nothing sent to
// Temporal. Warm previews, cached "unknown" answers and other clients are
// not affected; the budget refills with time.
func TestColdPathRateLimitedPerClient(t *testing.T) {
	reg := metrics.New("router-limits-test")
	up := helloUpstream(t)
	fw := &fakeWaker{url: up.URL}
	rt, srv := newRouter(t, fw, func(o *Options) {
		o.ColdRate, o.ColdBurst = 0.5, 3
		o.TrustedProxies = mustPrefixes(t, "127.0.0.1/32")
		o.Metrics = metrics.NewRouter(reg)
	})
	advance := fakeClock(rt)
	from := func(ip string) map[string]string { return map[string]string{"X-Forwarded-For": ip} }
	const a, b = "203.0.113.1", "203.0.113.2"

	// One real preview woken, two unknown hosts answered 404: three wakes,
	// the budget of client a.
	resp, _ := do(t, "GET", srv.URL+"/", "pr-1.preview.localhost", nil, from(a))
	require.Equal(t, 200, resp.StatusCode)
	fw.set(func(f *fakeWaker) { f.err = ErrUnknownPreview })
	for _, n := range []int{1001, 1002} {
		resp, _ = do(t, "GET", srv.URL+"/", fmt.Sprintf("pr-%d.preview.localhost", n), nil, from(a))
		require.Equal(t, 404, resp.StatusCode)
	}
	require.EqualValues(t, 3, fw.wakes.Load())

	// Random hosts now: refused, and Temporal never hears of them.
	for n := range 50 {
		resp, body := do(t, "GET", srv.URL+"/", fmt.Sprintf("pr-%d.preview.localhost", 5000+n), nil, from(a))
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		assert.Equal(t, "2", resp.Header.Get("Retry-After"), "one token per 2s")
		assert.Contains(t, body, "Too many requests")
	}
	assert.EqualValues(t, 3, fw.wakes.Load())
	rt.mu.RLock()
	assert.Len(t, rt.previews, 3, "refused hosts take no cache entry")
	rt.mu.RUnlock()

	// Free for the same client: the awake preview, and the cached 404.
	resp, body := do(t, "GET", srv.URL+"/warm", "pr-1.preview.localhost", nil, from(a))
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "hello /warm", body)
	resp, _ = do(t, "GET", srv.URL+"/", "pr-1001.preview.localhost", nil, from(a))
	assert.Equal(t, 404, resp.StatusCode)
	// Another client has its own budget.
	resp, _ = do(t, "GET", srv.URL+"/", "pr-6000.preview.localhost", nil, from(b))
	assert.Equal(t, 404, resp.StatusCode)
	assert.EqualValues(t, 4, fw.wakes.Load())
	// Client a's budget refills: one token after 2s.
	advance(2 * time.Second)
	resp, _ = do(t, "GET", srv.URL+"/", "pr-6001.preview.localhost", nil, from(a))
	assert.Equal(t, 404, resp.StatusCode)
	resp, _ = do(t, "GET", srv.URL+"/", "pr-6002.preview.localhost", nil, from(a))
	assert.Equal(t, 429, resp.StatusCode)
	assert.EqualValues(t, 5, fw.wakes.Load())

	text := scrape(t, reg)
	assert.Contains(t, text, `drydock_router_refused_total{reason="client_rate"} 51`)
	assert.Contains(t, text, `drydock_router_requests_total{path="refused"} 51`)
	assert.Contains(t, text, `drydock_router_wakes_total{result="unknown"} 4`)
}

// Concurrent first requests for one preview share one wake and cost one
// unit of budget: a browser's parallel requests for a sleeping preview are
// not refused.
func TestRequestsJoiningAWakeAreFree(t *testing.T) {
	up := helloUpstream(t)
	fw := &fakeWaker{url: up.URL, delay: 100 * time.Millisecond}
	_, srv := newRouter(t, fw, func(o *Options) { o.ColdRate, o.ColdBurst = 0.001, 1 })
	const n = 100
	var wg sync.WaitGroup
	codes := make(chan int, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest("GET", srv.URL+"/r"+strconv.Itoa(i), nil)
			req.Host = "pr-1.preview.localhost"
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	close(codes)
	for c := range codes {
		assert.Equal(t, 200, c)
	}
	assert.EqualValues(t, 1, fw.wakes.Load())
	resp, _ := get(t, srv, "pr-2.preview.localhost", "/")
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the one unit is spent")
}

// Past MaxConcurrentWakes wakes in flight, a wake of another preview is
// refused at once with 429 and Retry-After, without a call to Temporal;
// once a wake finishes, the next one goes through.
func TestConcurrentWakesCapped(t *testing.T) {
	reg := metrics.New("router-wakecap-test")
	up := helloUpstream(t)
	gate := make(chan struct{})
	fw := &fakeWaker{url: up.URL, gate: gate}
	_, srv := newRouter(t, fw, func(o *Options) {
		o.MaxConcurrentWakes = 2
		o.Metrics = metrics.NewRouter(reg)
	})
	results := make(chan int, 2)
	for n := 1; n <= 2; n++ {
		go func() {
			req, _ := http.NewRequest("GET", srv.URL+"/", nil)
			req.Host = "pr-" + strconv.Itoa(n) + ".preview.localhost"
			resp, err := httpClient.Do(req)
			if err != nil {
				results <- 0
				return
			}
			resp.Body.Close()
			results <- resp.StatusCode
		}()
	}
	require.Eventually(t, func() bool { return fw.wakes.Load() == 2 }, 5*time.Second, 5*time.Millisecond)

	start := time.Now()
	resp, body := get(t, srv, "pr-3.preview.localhost", "/")
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, wakeCapRetryAfter, resp.Header.Get("Retry-After"))
	assert.Contains(t, body, "octo/hello#3 was not woken")
	assert.Less(t, time.Since(start), time.Second, "refused at once")
	assert.EqualValues(t, 2, fw.wakes.Load(), "nothing sent to Temporal")

	close(gate)
	assert.Equal(t, 200, <-results)
	assert.Equal(t, 200, <-results)
	resp, _ = get(t, srv, "pr-3.preview.localhost", "/")
	assert.Equal(t, 200, resp.StatusCode)
	assert.EqualValues(t, 3, fw.wakes.Load())

	text := scrape(t, reg)
	assert.Contains(t, text, `drydock_router_refused_total{reason="wake_cap"} 1`)
	assert.Contains(t, text, `drydock_router_requests_total{path="refused"} 1`)
	assert.NotContains(t, text, `drydock_router_wakes_total{result="error"}`)
}

// The limiter's memory is bounded: past its size the least recently seen
// client is forgotten. IPv6 clients are counted per /64.
func TestColdLimiterBoundedAndPerIPv6Prefix(t *testing.T) {
	l := newColdLimiter(1, 1, 100)
	for i := range 1000 {
		ok, _ := l.allow(clientKey(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})), 1)
		require.True(t, ok)
	}
	assert.Equal(t, 100, l.len())

	ok, _ := l.allow(clientKey(netip.MustParseAddr("2001:db8:1:2::1")), 1)
	require.True(t, ok)
	ok, wait := l.allow(clientKey(netip.MustParseAddr("2001:db8:1:2:ffff::9")), 1)
	assert.False(t, ok, "same /64, same budget")
	assert.InDelta(t, time.Second, wait, float64(time.Millisecond))
	ok, _ = l.allow(clientKey(netip.MustParseAddr("2001:db8:1:3::1")), 1)
	assert.True(t, ok, "another /64")
}

func mustPrefixes(t *testing.T, list ...string) []netip.Prefix {
	t.Helper()
	p, err := ParseTrustedProxies(list)
	require.NoError(t, err)
	return p
}
