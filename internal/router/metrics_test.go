package router

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/metrics"
)

// The router's figures: concurrent first requests are cold and cause one
// wake; later ones within the TTL are warm; a failed wake is an error; the
// cold requests' added latency includes the wake.
func TestMetricsCountPathsWakesAndAddedLatency(t *testing.T) {
	reg := metrics.New("router-test")
	up := helloUpstream(t)
	fw := &fakeWaker{url: up.URL, delay: 200 * time.Millisecond}
	_, srv := newRouter(t, fw, func(o *Options) { o.Metrics = metrics.NewRouter(reg) })

	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", fmt.Sprintf("%s/r%d", srv.URL, i), nil)
			req.Host = "pr-1.preview.localhost"
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
	for range 5 {
		resp, _ := get(t, srv, "pr-1.preview.localhost", "/warm")
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	fw.set(func(f *fakeWaker) { f.err, f.delay = fmt.Errorf("wake: %w", ErrPreviewGone), 0 })
	resp, _ := get(t, srv, "pr-2.preview.localhost", "/")
	require.Equal(t, http.StatusGone, resp.StatusCode)
	// A preview still deploying answers "not ready": a wake that worked as
	// designed, not an error an operator should be paged for.
	fw.set(func(f *fakeWaker) { f.err = fmt.Errorf("wake: %w", ErrNotReady) })
	resp, _ = get(t, srv, "pr-3.preview.localhost", "/")
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	text := scrape(t, reg)
	assert.Contains(t, text, `drydock_router_requests_total{path="cold"} 20`)
	assert.Contains(t, text, `drydock_router_requests_total{path="warm"} 5`)
	assert.Contains(t, text, `drydock_router_requests_total{path="error"} 2`)
	assert.Contains(t, text, `drydock_router_wakes_total{result="ok"} 1`, "twenty cold requests, one wake")
	assert.Contains(t, text, `drydock_router_wakes_total{result="gone"} 1`)
	assert.Contains(t, text, `drydock_router_wakes_total{result="not_ready"} 1`)
	assert.NotContains(t, text, `drydock_router_wakes_total{result="error"}`)
	assert.Contains(t, text, `drydock_router_added_latency_seconds_count{path="cold"} 20`)
	assert.Contains(t, text, `drydock_router_added_latency_seconds_count{path="warm"} 5`)
	// Every cold request waited for most of the 200 ms wake; warm ones did not.
	assert.Contains(t, text, `drydock_router_added_latency_seconds_bucket{path="cold",le="0.1"} 0`)
	assert.Contains(t, text, `drydock_router_added_latency_seconds_bucket{path="warm",le="0.1"} 5`)
}

func scrape(t *testing.T, reg *metrics.Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	reg.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	return rec.Body.String()
}
