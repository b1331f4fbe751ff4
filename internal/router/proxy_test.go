package router

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sleepyPreview is a router in front of a preview whose machine sleeps
// (answers 503) while asleep is set and wakes when the router wakes it;
// upstreamCalls counts the requests that reach it. fallAsleep puts the
// machine to sleep behind the router's back a while after its last wake.
func sleepyPreview(t *testing.T) (fw *fakeWaker, srv *httptest.Server, asleep *atomic.Bool, upstreamCalls *atomic.Int32, fallAsleep func()) {
	asleep, upstreamCalls = new(atomic.Bool), new(atomic.Int32)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamCalls.Add(1)
		if asleep.Load() {
			http.Error(w, "machine is not running", http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	}))
	t.Cleanup(up.Close)
	fw = &fakeWaker{url: up.URL, onWake: func() { asleep.Store(false) }}
	rt, srv := newRouter(t, fw, func(o *Options) { o.AwakeTTL = time.Hour })
	advance := fakeClock(rt)
	fallAsleep = func() {
		advance(appUnavailableGrace + time.Second)
		asleep.Store(true)
		upstreamCalls.Store(0)
	}
	return fw, srv, asleep, upstreamCalls, fallAsleep
}

func TestUpstreamAsleepRewakesAndRetriesIdempotent(t *testing.T) {
	fw, srv, asleep, upstreamCalls, fallAsleep := sleepyPreview(t)
	host := "pr-1.preview.localhost"

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

// wsKey is the Sec-WebSocket-Key of wsDial's upgrade.
var wsKey = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))

// wsDial connects to srv (closed when the test ends, deadline from now on),
// asks pr-1's preview for a WebSocket upgrade, and requires its 101.
func wsDial(t *testing.T, srv *httptest.Server, deadline time.Duration) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(deadline)))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: pr-1.preview.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", wsKey)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	return conn, br, resp
}

func TestWebSocketUpgradeRoundTrip(t *testing.T) {
	up := wsUpstream(t)
	_, srv := newRouter(t, &fakeWaker{url: up.URL}, nil)
	conn, br, resp := wsDial(t, srv, 5*time.Second)
	assert.Equal(t, wsAccept(wsKey), resp.Header.Get("Sec-WebSocket-Accept"))

	for _, msg := range []string{"hello", "preview"} {
		_, err := conn.Write([]byte(msg))
		require.NoError(t, err)
		got := make([]byte, len(msg))
		_, err = io.ReadFull(br, got)
		require.NoError(t, err)
		assert.Equal(t, strings.ToUpper(msg), string(got))
	}
}
