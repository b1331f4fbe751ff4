package router

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// heldUpstream answers each request once release is closed, counting the
// requests it holds.
type heldUpstream struct {
	*httptest.Server
	release  chan struct{}
	once     sync.Once
	inflight atomic.Int32
}

// open answers every request held and to come.
func (h *heldUpstream) open() { h.once.Do(func() { close(h.release) }) }

func newHeldUpstream(t *testing.T) *heldUpstream {
	h := &heldUpstream{release: make(chan struct{})}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.inflight.Add(1)
		defer h.inflight.Add(-1)
		<-h.release
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	t.Cleanup(h.Close)
	return h
}

// tryGet is get for other goroutines than the test's: it reports errors
// with t.Error.
func tryGet(t *testing.T, url, host string) (int, string) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	req.Host = host
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Error(err)
	}
	return resp.StatusCode, string(b)
}

// A burst of requests that waited for a wake reaches the woken preview at
// most releaseWidth at a time; a request that finds the preview warm is not
// held back behind them.
func TestWokenBurstIsReleasedBounded(t *testing.T) {
	up := newHeldUpstream(t)
	woken := make(chan struct{})
	fw := &fakeWaker{url: up.URL, gate: woken}
	rt, srv := newRouter(t, fw, func(o *Options) { o.AwakeTTL = time.Hour })
	t.Cleanup(up.open) // before the router's: a failed test ends too
	rt.releaseWidth, rt.releaseHold = 4, time.Hour
	const n = 12
	var wg sync.WaitGroup
	var ok atomic.Int32
	for i := range n {
		wg.Go(func() {
			code, body := tryGet(t, srv.URL+fmt.Sprintf("/r%d", i), "pr-1.preview.localhost")
			if code == http.StatusOK && body == fmt.Sprintf("hello /r%d", i) {
				ok.Add(1)
			}
		})
	}
	var p *preview
	require.Eventually(t, func() bool {
		rt.mu.RLock()
		defer rt.mu.RUnlock()
		p = rt.previews[Target{Owner: "octo", Repo: "hello", Number: 1}]
		return p != nil && p.waiters.Load() == n
	}, 10*time.Second, time.Millisecond, "every request waits for the wake")
	close(woken)
	waiting := p.release.waiting.Load
	// Every request is either at the preview or waiting for a place.
	require.Eventually(t, func() bool { return up.inflight.Load()+waiting() == n }, 10*time.Second, time.Millisecond)
	assert.EqualValues(t, 4, up.inflight.Load(), "woken requests in flight to the preview at once")

	// The preview is warm now: a new request goes straight through.
	wg.Go(func() {
		code, _ := tryGet(t, srv.URL+"/warm", "pr-1.preview.localhost")
		assert.Equal(t, http.StatusOK, code)
	})
	require.Eventually(t, func() bool { return up.inflight.Load() == 5 }, 10*time.Second, time.Millisecond)

	up.open()
	wg.Wait()
	assert.EqualValues(t, n, ok.Load())
	assert.EqualValues(t, 1, fw.wakes.Load())
}

func TestReleaserPlaces(t *testing.T) {
	r := newReleaser(1, time.Hour)
	release, err := r.acquire(context.Background())
	require.NoError(t, err)

	// Full: a request whose client went away gets its context's error.
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = r.acquire(gone)
	require.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, r.waiting.Load())

	// Released twice, the place is given back once.
	release()
	release()
	second, err := r.acquire(context.Background())
	require.NoError(t, err)
	_, err = r.acquire(gone)
	require.ErrorIs(t, err, context.Canceled)
	second()
}

// A request that keeps its place past hold (a long poll) gives it up, so
// the requests behind it go on.
func TestReleaserHoldEnds(t *testing.T) {
	r := newReleaser(1, time.Millisecond)
	_, err := r.acquire(context.Background()) // never released by its request
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	release, err := r.acquire(ctx)
	require.NoError(t, err)
	release()
}

// The reverse proxies share their copy buffers: proxying a body
// allocates no 32 KiB buffer per request.
func TestProxyBuffersArePooled(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	t.Cleanup(up.Close)
	rt, srv := newRouter(t, &fakeWaker{url: up.URL}, nil)
	get(t, srv, "pr-1.preview.localhost", "/")
	rt.mu.RLock()
	var u *upstream
	for _, p := range rt.previews {
		u = p.up.Load()
	}
	rt.mu.RUnlock()
	require.NotNil(t, u)
	assert.Same(t, rt.buffers, u.proxy.BufferPool)
	b := rt.buffers.Get()
	assert.Len(t, b, proxyBufferSize)
	rt.buffers.Put(b)
	rt.buffers.Put(make([]byte, 10)) // a foreign buffer is dropped, not lent out short
	assert.Len(t, rt.buffers.Get(), proxyBufferSize)
}
