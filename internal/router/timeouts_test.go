package router

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A preview that accepts a request and never sends its headers gets the
// request answered 504 after UpstreamHeaderTimeout; a slow app is not a
// sleeping machine, so it is not woken again.
func TestUpstreamHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	defer close(release)
	fw := &fakeWaker{url: up.URL}
	_, srv := newRouter(t, fw, func(o *Options) { o.UpstreamHeaderTimeout = 300 * time.Millisecond })

	resp, _ := get(t, srv, "pr-1.preview.localhost", "/")
	require.Equal(t, 200, resp.StatusCode)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/slow", nil)
	req.Host = "pr-1.preview.localhost"
	resp, err := httpClient.Do(req)
	require.NoError(t, err, "answered before the client gives up")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
	assert.Contains(t, string(b), "did not answer in time")
	assert.GreaterOrEqual(t, took, 300*time.Millisecond)
	assert.Less(t, took, 3*time.Second)
	resp, _ = get(t, srv, "pr-1.preview.localhost", "/")
	assert.Equal(t, 200, resp.StatusCode)
	assert.EqualValues(t, 1, fw.wakes.Load(), "not marked cold")
}

// An upgraded connection (a WebSocket through the router) stays open while
// bytes flow either way, and is closed on both sides once nothing has
// passed for UpgradeIdleTimeout.
func TestUpgradedConnectionClosedWhenIdle(t *testing.T) {
	upstreamClosed := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer close(upstreamClosed)
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", wsAccept(r.Header.Get("Sec-WebSocket-Key")))
		_ = brw.Flush()
		buf := make([]byte, 1024)
		for {
			n, err := brw.Read(buf) // returns once the router closes its side
			if err != nil {
				return
			}
			_, _ = conn.Write(bytes.ToUpper(buf[:n]))
		}
	}))
	defer up.Close()
	const idle = 400 * time.Millisecond
	_, srv := newRouter(t, &fakeWaker{url: up.URL}, func(o *Options) { o.UpgradeIdleTimeout = idle })
	conn, br, _ := wsDial(t, srv, 10*time.Second)

	// Traffic for three times the idle limit: the connection stays.
	for range 12 {
		time.Sleep(idle / 4)
		_, err := conn.Write([]byte("ping"))
		require.NoError(t, err)
		got := make([]byte, 4)
		_, err = io.ReadFull(br, got)
		require.NoError(t, err, "still open while bytes flow")
		assert.Equal(t, "PING", string(got))
	}

	// Then silence: both sides are closed after the idle limit.
	quiet := time.Now()
	_, err := br.ReadByte()
	closedAfter := time.Since(quiet)
	require.ErrorIs(t, err, io.EOF, "the router closed the client's side")
	assert.GreaterOrEqual(t, closedAfter, idle-50*time.Millisecond)
	assert.Less(t, closedAfter, idle+2*time.Second)
	select {
	case <-upstreamClosed:
	case <-time.After(5 * time.Second):
		t.Fatal("the preview's side is still open")
	}
}
