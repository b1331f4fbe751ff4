package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/intake"
)

// The defaults give a 1 MiB body 26s after 10s of headers, and answer
// within 30s more.
func TestServerTimeoutsSizedForTheBodyLimit(t *testing.T) {
	srv := newServer(http.NotFoundHandler(), intake.DefaultMaxBody, defaultTimeouts)
	assert.Equal(t, 10*time.Second, srv.ReadHeaderTimeout)
	assert.Equal(t, 26*time.Second, srv.ReadTimeout)
	assert.Equal(t, 56*time.Second, srv.WriteTimeout)
	assert.Equal(t, 60*time.Second, srv.IdleTimeout)
	assert.Equal(t, 64<<10, srv.MaxHeaderBytes)
}

// closedWithin reports whether the server closed c (EOF or reset on read)
// before limit; whatever it answered first is discarded.
func closedWithin(c net.Conn, limit time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return err == nil || !(errors.As(err, &ne) && ne.Timeout())
}

// Slow clients cannot hold connections: headers that never finish, a body
// trickled below the rate, an idle keep-alive connection are all closed by
// the server (timeouts shrunk so the test is quick).
func TestSlowClientsAreCutOff(t *testing.T) {
	h, err := intake.New(intake.Options{Secret: "s3cret", Allowed: intake.AllowEveryone(), MaxConcurrentBodies: 2, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	tm := timeouts{header: 300 * time.Millisecond, route: time.Second, idle: 300 * time.Millisecond, bodyRate: 1 << 20}
	srv := newServer(h, 1<<20, tm) // read timeout: 300ms + 1s
	srv.ErrorLog = nil
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	addr := ln.Addr().String()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}

	// Slowloris: half a request line, never the end of the headers.
	c := dial()
	_, err = fmt.Fprint(c, "POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	require.NoError(t, err)
	assert.True(t, closedWithin(c, 10*time.Second), "unfinished headers: connection closed")

	// A 1 MiB body announced, 10 bytes sent, then nothing.
	c = dial()
	_, err = fmt.Fprintf(c, "POST /webhooks/github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"action\":", 1<<20)
	require.NoError(t, err)
	assert.True(t, closedWithin(c, 10*time.Second), "stalled body: connection closed")

	// A finished request, then an idle keep-alive connection.
	c = dial()
	_, err = fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.True(t, closedWithin(c, 10*time.Second), "idle connection closed")

	// The server still serves.
	resp, err = http.Get("http://" + addr + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}
