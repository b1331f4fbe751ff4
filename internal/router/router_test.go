package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/workflows"
)

// fakeWaker counts calls and answers with a configurable URL, delay and error.
type fakeWaker struct {
	mu      sync.Mutex
	url     string
	err     error
	delay   time.Duration
	gate    chan struct{} // when set, Wake waits for it to close (or ctx)
	onWake  func()        // runs inside each successful Wake
	touchGt chan struct{} // when set, Touch waits for it to close (or ctx)

	wakes, touches, touching atomic.Int32
	touchedIDs               sync.Map

	vis        string // the visibility every preview has ("": public)
	visErr     error
	visQueries atomic.Int32
}

func (f *fakeWaker) Visibility(ctx context.Context, id string) (string, error) {
	f.visQueries.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.visErr != nil {
		return "", f.visErr
	}
	if f.vis == "" {
		return workflows.VisibilityPublic, nil
	}
	return f.vis, nil
}

func (f *fakeWaker) set(fn func(f *fakeWaker)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeWaker) Wake(ctx context.Context, id string) (workflows.WakeResult, error) {
	f.wakes.Add(1)
	f.mu.Lock()
	url, err, delay, gate, onWake := f.url, f.err, f.delay, f.gate, f.onWake
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return workflows.WakeResult{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		}
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	if err != nil {
		return workflows.WakeResult{}, err
	}
	if onWake != nil {
		onWake()
	}
	return workflows.WakeResult{URL: url, MachineID: "dm-test"}, nil
}

func (f *fakeWaker) Touch(ctx context.Context, id string) error {
	f.touching.Add(1)
	defer f.touching.Add(-1)
	f.mu.Lock()
	gate := f.touchGt
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.touches.Add(1)
	f.touchedIDs.Store(id, true)
	return nil
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// newRouter serves a Router over HTTP with the preview domain
// preview.localhost and the default repository octo/hello.
func newRouter(t *testing.T, w Waker, mod func(*Options)) (*Router, *httptest.Server) {
	t.Helper()
	opts := Options{Domain: "preview.localhost", DefaultRepo: "octo/hello", Waker: w, Logger: testLogger()}
	if mod != nil {
		mod(&opts)
	}
	rt, err := New(opts)
	require.NoError(t, err)
	srv := httptest.NewServer(rt)
	t.Cleanup(func() {
		srv.Close()
		rt.Close()
	})
	return rt, srv
}

// fakeClock replaces the router's clock; advance moves it.
func fakeClock(rt *Router) func(time.Duration) {
	var now atomic.Int64
	now.Store(int64(time.Hour))
	rt.clock = now.Load
	return func(d time.Duration) { now.Add(int64(d)) }
}

var httpClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxIdleConns: 256}}

func do(t *testing.T, method, url, host string, body io.Reader, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	req.Host = host
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func get(t *testing.T, srv *httptest.Server, host, path string) (*http.Response, string) {
	t.Helper()
	return do(t, "GET", srv.URL+path, host, nil, nil)
}

// helloUpstream answers "hello <path>".
func helloUpstream(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	t.Cleanup(up.Close)
	return up
}

func TestConcurrentFirstRequestsWakeOnce(t *testing.T) {
	up := helloUpstream(t)
	fw := &fakeWaker{url: up.URL, delay: 50 * time.Millisecond}
	_, srv := newRouter(t, fw, nil)

	const n = 200
	var wg sync.WaitGroup
	var ok atomic.Int32
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest("GET", fmt.Sprintf("%s/r%d", srv.URL, i), nil)
			req.Host = "pr-1.preview.localhost"
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && string(b) == fmt.Sprintf("hello /r%d", i) {
				ok.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	assert.EqualValues(t, n, ok.Load())
	assert.EqualValues(t, 1, fw.wakes.Load())
}

func TestWarmWithinTTLWakesNoMore(t *testing.T) {
	up := helloUpstream(t)
	fw := &fakeWaker{url: up.URL}
	rt, srv := newRouter(t, fw, func(o *Options) { o.AwakeTTL = 10 * time.Second })
	advance := fakeClock(rt)

	for range 20 {
		resp, body := get(t, srv, "pr-1.preview.localhost", "/x")
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, "hello /x", body)
	}
	assert.EqualValues(t, 1, fw.wakes.Load())
	u := rt.previews[Target{"octo", "hello", 1}].up.Load()

	advance(9 * time.Second)
	get(t, srv, "pr-1.preview.localhost", "/")
	assert.EqualValues(t, 1, fw.wakes.Load(), "still within the TTL")

	advance(2 * time.Second)
	get(t, srv, "pr-1.preview.localhost", "/")
	get(t, srv, "pr-1.preview.localhost", "/")
	assert.EqualValues(t, 2, fw.wakes.Load(), "TTL expired: one more wake")
	assert.Same(t, u, rt.previews[Target{"octo", "hello", 1}].up.Load(), "same URL: the proxy is reused")

	// Another preview is another wake.
	get(t, srv, "pr-2.preview.localhost", "/")
	assert.EqualValues(t, 3, fw.wakes.Load())
}

func TestWakeTimeoutAnswers503ThenRetryFindsItAwake(t *testing.T) {
	up := helloUpstream(t)
	gate := make(chan struct{})
	fw := &fakeWaker{url: up.URL, gate: gate}
	_, srv := newRouter(t, fw, func(o *Options) { o.WakeTimeout = 300 * time.Millisecond })

	start := time.Now()
	resp, body := get(t, srv, "pr-1.preview.localhost", "/")
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.Contains(t, body, "is starting")
	assert.Less(t, time.Since(start), 2*time.Second)

	// The wake runs on after the request gave up; once it is done, the
	// client's retry is served without another wake.
	close(gate)
	require.Eventually(t, func() bool {
		resp, _ := get(t, srv, "pr-1.preview.localhost", "/")
		return resp.StatusCode == 200
	}, 5*time.Second, 20*time.Millisecond)
	assert.EqualValues(t, 1, fw.wakes.Load())
}

func TestWakeErrorPages(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		body   string
		cached bool
	}{
		{"unknown", fmt.Errorf("wake: %w", ErrUnknownPreview), 404, "No preview for octo/hello#5", true},
		{"gone", fmt.Errorf("wake: %w", ErrPreviewGone), 410, "was torn down", true},
		{"unavailable", fmt.Errorf("wake: %w", ErrUnavailable), 503, "unavailable", false},
		{"not ready", fmt.Errorf("wake: %w", ErrNotReady), 503, "is starting", false},
		{"failed", errors.New("deploy failed: exit 2"), 502, "could not be woken", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fw := &fakeWaker{err: tc.err}
			_, srv := newRouter(t, fw, nil)
			resp, body := get(t, srv, "pr-5.preview.localhost", "/")
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Contains(t, body, tc.body)
			assert.NotContains(t, body, "exit 2", "wake errors are logged, not shown")
			if tc.status == 503 {
				assert.NotEmpty(t, resp.Header.Get("Retry-After"))
			}
			get(t, srv, "pr-5.preview.localhost", "/")
			want := 2
			if tc.cached {
				want = 1 // the answer is reused for a few seconds
			}
			assert.EqualValues(t, want, fw.wakes.Load())
		})
	}
}

func TestNoPreviewAndOwnEndpoints(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app %s", r.URL.Path)
	}))
	defer up.Close()
	var ready atomic.Bool
	_, srv := newRouter(t, &fakeWaker{url: up.URL}, func(o *Options) {
		o.Ready = func(context.Context) error {
			if ready.Load() {
				return nil
			}
			return errors.New("connection refused")
		}
	})
	own := strings.TrimPrefix(srv.URL, "http://")

	resp, body := get(t, srv, own, "/healthz")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "ok\n", body)
	resp, _ = get(t, srv, own, "/readyz")
	assert.Equal(t, 503, resp.StatusCode)
	ready.Store(true)
	resp, _ = get(t, srv, own, "/readyz")
	assert.Equal(t, 200, resp.StatusCode)

	// A preview path named /healthz is the app's.
	resp, body = get(t, srv, "pr-1.preview.localhost:8090", "/healthz")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "app /healthz", body)
	resp, body = do(t, "GET", srv.URL+"/readyz", own, nil, map[string]string{"X-Drydock-Repo": "octo/hello", "X-PR-Number": "1"})
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "app /readyz", body)

	for _, host := range []string{own, "preview.localhost", "www.preview.localhost", "pr-x.preview.localhost"} {
		resp, body = get(t, srv, host, "/anything")
		assert.Equal(t, 404, resp.StatusCode, host)
		assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
		assert.Contains(t, body, "pr-&lt;number&gt;--&lt;owner&gt;--&lt;repo&gt;.preview.localhost")
		assert.Contains(t, body, "X-Drydock-Repo")
	}
	resp, _ = do(t, "GET", srv.URL, own, nil, map[string]string{"X-Drydock-Repo": "octo/hello"})
	assert.Equal(t, 404, resp.StatusCode, "header form needs both headers")
}

func TestTouchThrottledAndOffTheRequestPath(t *testing.T) {
	up := helloUpstream(t)
	gate := make(chan struct{})
	fw := &fakeWaker{url: up.URL, touchGt: gate}
	rt, srv := newRouter(t, fw, func(o *Options) {
		o.TouchEvery = time.Minute
		o.ColdRate = -1 // hundreds of previews woken by one client: not what this test is about
	})
	advance := fakeClock(rt)

	// Touch blocks, yet requests are served.
	for range 10 {
		resp, _ := get(t, srv, "pr-1.preview.localhost", "/")
		require.Equal(t, 200, resp.StatusCode)
	}
	require.Eventually(t, func() bool { return fw.touching.Load() == 1 }, 5*time.Second, 5*time.Millisecond)

	// Many previews at once: the touches in progress stay bounded by the
	// workers, the backlog by the queue; requests never wait.
	start := time.Now()
	for i := range touchQueue + 50 {
		resp, _ := get(t, srv, fmt.Sprintf("pr-%d.preview.localhost", 100+i), "/")
		require.Equal(t, 200, resp.StatusCode)
	}
	assert.Less(t, time.Since(start), 20*time.Second)
	assert.LessOrEqual(t, fw.touching.Load(), int32(touchWorkers))
	close(gate)
	// Every touch queued runs; the dropped ones were given back to later
	// requests (lastTouch reset to never).
	queued := 0
	rt.mu.RLock()
	for _, p := range rt.previews {
		if p.lastTouch.Load() != 0 {
			queued++
		}
	}
	rt.mu.RUnlock()
	assert.Less(t, queued, touchQueue+50+1, "some were dropped")
	assert.GreaterOrEqual(t, queued, touchQueue)
	require.Eventually(t, func() bool { return fw.touches.Load() == int32(queued) }, 5*time.Second, 5*time.Millisecond)
	_, ok := fw.touchedIDs.Load("preview:octo/hello:1")
	assert.True(t, ok)

	// Throttled per preview: once per interval.
	before := fw.touches.Load()
	advance(30 * time.Second)
	for range 5 {
		get(t, srv, "pr-1.preview.localhost", "/")
	}
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, before, fw.touches.Load(), "within the interval")
	advance(31 * time.Second)
	for range 5 {
		get(t, srv, "pr-1.preview.localhost", "/")
	}
	require.Eventually(t, func() bool { return fw.touches.Load() == before+1 }, 5*time.Second, 5*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, before+1, fw.touches.Load())
}

func TestIdlePreviewsAreEvicted(t *testing.T) {
	up := helloUpstream(t)
	fw := &fakeWaker{url: up.URL}
	rt, srv := newRouter(t, fw, nil)
	advance := fakeClock(rt)
	get(t, srv, "pr-1.preview.localhost", "/")
	fw.set(func(f *fakeWaker) { f.err = ErrUnknownPreview })
	get(t, srv, "pr-2.preview.localhost", "/")
	advance(2 * time.Minute)
	get(t, srv, "pr-3.preview.localhost", "/") // sweeps
	rt.mu.RLock()
	assert.Len(t, rt.previews, 2, "the never-woken preview left, the woken one stays")
	rt.mu.RUnlock()
	advance(11 * time.Minute)
	get(t, srv, "pr-4.preview.localhost", "/")
	rt.mu.RLock()
	assert.Len(t, rt.previews, 1)
	rt.mu.RUnlock()
}

func TestNewValidates(t *testing.T) {
	_, err := New(Options{Domain: "preview.localhost"})
	assert.ErrorContains(t, err, "Waker")
	_, err = New(Options{Domain: "", Waker: &fakeWaker{}})
	assert.Error(t, err)
	_, err = New(Options{Domain: "preview.localhost", Waker: &fakeWaker{}, AwakeTTL: -time.Second})
	assert.ErrorContains(t, err, "awake TTL")
}
