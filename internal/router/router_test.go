package router

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
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

func TestUpstreamAsleepRewakesAndRetriesIdempotent(t *testing.T) {
	var asleep atomic.Bool
	var upstreamCalls atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamCalls.Add(1)
		if asleep.Load() {
			http.Error(w, "machine is not running", http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	}))
	defer up.Close()
	fw := &fakeWaker{url: up.URL, onWake: func() { asleep.Store(false) }}
	rt, srv := newRouter(t, fw, func(o *Options) { o.AwakeTTL = time.Hour })
	advance := fakeClock(rt)
	host := "pr-1.preview.localhost"
	// fallAsleep: the machine autosleeps behind the router's back a while
	// after its last wake.
	fallAsleep := func() {
		advance(appUnavailableGrace + time.Second)
		asleep.Store(true)
		upstreamCalls.Store(0)
	}

	resp, body := get(t, srv, host, "/a")
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "GET /a ", body)
	assert.EqualValues(t, 1, fw.wakes.Load())

	// A GET finds it asleep: woken, and retried once.
	fallAsleep()
	resp, body = get(t, srv, host, "/b")
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "GET /b ", body)
	assert.EqualValues(t, 2, fw.wakes.Load())
	assert.EqualValues(t, 2, upstreamCalls.Load())

	// HEAD and OPTIONS too.
	for _, m := range []string{"HEAD", "OPTIONS"} {
		fallAsleep()
		resp, _ = do(t, m, srv.URL+"/c", host, nil, nil)
		assert.Equal(t, 200, resp.StatusCode, m)
	}
	assert.EqualValues(t, 4, fw.wakes.Load())

	// A POST gets the 503 with Retry-After; a wake starts in the
	// background so that the client's retry succeeds.
	fallAsleep()
	resp, _ = do(t, "POST", srv.URL+"/d", host, strings.NewReader("payload"), nil)
	assert.Equal(t, 503, resp.StatusCode)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.EqualValues(t, 1, upstreamCalls.Load(), "not retried")
	require.Eventually(t, func() bool { return fw.wakes.Load() == 5 && !asleep.Load() }, 5*time.Second, 10*time.Millisecond)
	resp, body = do(t, "POST", srv.URL+"/d", host, strings.NewReader("payload"), nil)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "POST /d payload", body)

	// A GET that still gets a 503 after the wake gets it as it is.
	fw.set(func(f *fakeWaker) { f.onWake = nil })
	fallAsleep()
	resp, _ = get(t, srv, host, "/e")
	assert.Equal(t, 503, resp.StatusCode)
	assert.EqualValues(t, 2, upstreamCalls.Load(), "one retry only")
	assert.EqualValues(t, 6, fw.wakes.Load())

	// So does one right after a wake: that 503 is the app's own (a dev
	// server still compiling), not worth another wake.
	upstreamCalls.Store(0)
	resp, _ = get(t, srv, host, "/f")
	assert.Equal(t, 503, resp.StatusCode)
	assert.EqualValues(t, 1, upstreamCalls.Load())
	assert.EqualValues(t, 6, fw.wakes.Load())
}

func TestReplacedUpstreamIsRewoken(t *testing.T) {
	old := helloUpstream(t)
	fw := &fakeWaker{url: old.URL}
	_, srv := newRouter(t, fw, nil)
	resp, _ := get(t, srv, "pr-1.preview.localhost", "/")
	require.Equal(t, 200, resp.StatusCode)

	// A redeploy replaced the preview: the old URL refuses connections.
	old.Close()
	next := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "new %s", r.URL.Path)
	}))
	defer next.Close()
	fw.set(func(f *fakeWaker) { f.url = next.URL })
	resp, body := get(t, srv, "pr-1.preview.localhost", "/p")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "new /p", body)
	assert.EqualValues(t, 2, fw.wakes.Load())
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}

func TestRetargetKeepsPath(t *testing.T) {
	req := httptest.NewRequest("GET", "http://old:1/base/x%2Fy/z?q=1", nil)
	from, to := mustURL(t, "http://old:1/base"), mustURL(t, "https://new:2/other/")
	out := retarget(req, from, to)
	assert.Equal(t, "https://new:2/other/x%2Fy/z?q=1", out.URL.String())
	assert.Same(t, req, retarget(req, from, from))
}

func TestRequestBodyAndForwardedHeaders(t *testing.T) {
	var mu sync.Mutex
	var got http.Header
	var gotHost string
	seen := func() (http.Header, string) {
		mu.Lock()
		defer mu.Unlock()
		return got, gotHost
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got, gotHost = r.Header.Clone(), r.Host
		mu.Unlock()
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		fmt.Fprintf(w, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
	}))
	defer up.Close()
	_, srv := newRouter(t, &fakeWaker{url: up.URL}, nil)

	body := bytes.Repeat([]byte("drydock "), 256<<10) // 2 MiB
	sum := sha256.Sum256(body)
	resp, out := do(t, "POST", srv.URL+"/upload", "127.0.0.1:8090", bytes.NewReader(body),
		map[string]string{"X-Drydock-Repo": "octo/hello", "X-PR-Number": "3", "X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6"})
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, fmt.Sprintf("%d %s", len(body), hex.EncodeToString(sum[:])), out)

	h, host := seen()
	assert.Equal(t, strings.TrimPrefix(up.URL, "http://"), host, "the upstream sees its own host")
	assert.Equal(t, "127.0.0.1:8090", h.Get("X-Forwarded-Host"))
	assert.Equal(t, "http", h.Get("X-Forwarded-Proto"))
	assert.Equal(t, "127.0.0.1", h.Get("X-Forwarded-For"), "client-supplied X-Forwarded-For is not trusted")
	assert.Empty(t, h.Values("X-Real-Ip"), "client-supplied X-Real-IP is not passed on")
	assert.Empty(t, h.Values("X-Drydock-Repo"))
	assert.Empty(t, h.Values("X-Pr-Number"))

	// Chunked upload (unknown length) too.
	pr, pw := io.Pipe()
	go func() {
		for range 4 {
			_, _ = pw.Write(body[:1<<16])
		}
		pw.Close()
	}()
	resp, out = do(t, "PUT", srv.URL+"/chunked", "pr-3.preview.localhost", pr, nil)
	require.Equal(t, 200, resp.StatusCode)
	assert.True(t, strings.HasPrefix(out, fmt.Sprintf("%d ", 4<<16)), out)
	h, _ = seen()
	assert.Equal(t, "pr-3.preview.localhost", h.Get("X-Forwarded-Host"))
}

func TestServerSentEventsStreamIncrementally(t *testing.T) {
	second := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-second:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "data: two\n\n")
	}))
	defer up.Close()
	_, srv := newRouter(t, &fakeWaker{url: up.URL}, nil)

	req, _ := http.NewRequest("GET", srv.URL+"/events", nil)
	req.Host = "pr-1.preview.localhost"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := httpClient.Do(req.WithContext(ctx))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	require.NoError(t, err, "the first event arrives before the upstream sends the second")
	assert.Equal(t, "data: one\n", line)
	close(second)
	_, _ = br.ReadString('\n')
	line, err = br.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "data: two\n", line)
}

// wsUpstream completes a WebSocket handshake by hand and then echoes bytes,
// upper-cased.
func wsUpstream(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want an upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", wsAccept(r.Header.Get("Sec-WebSocket-Key")))
		_ = brw.Flush()
		buf := make([]byte, 1024)
		for {
			n, err := brw.Read(buf)
			if err != nil {
				return
			}
			_, _ = conn.Write(bytes.ToUpper(buf[:n]))
		}
	}))
	t.Cleanup(up.Close)
	return up
}

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC11B85"))
	return base64.StdEncoding.EncodeToString(h[:])
}

func TestWebSocketUpgradeRoundTrip(t *testing.T) {
	up := wsUpstream(t)
	_, srv := newRouter(t, &fakeWaker{url: up.URL}, nil)

	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: pr-1.preview.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", key)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	assert.Equal(t, wsAccept(key), resp.Header.Get("Sec-WebSocket-Accept"))

	for _, msg := range []string{"hello", "preview"} {
		_, err = conn.Write([]byte(msg))
		require.NoError(t, err)
		got := make([]byte, len(msg))
		_, err = io.ReadFull(br, got)
		require.NoError(t, err)
		assert.Equal(t, strings.ToUpper(msg), string(got))
	}
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
