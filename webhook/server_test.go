package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/loopback"
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

// With DRYDOCK_INSECURE_DEV (anyone may post) the webhook answers only
// requests addressed to a loopback name: a DNS-rebinding request (a page on
// evil.example whose name now resolves to 127.0.0.1) is refused with 421 and
// routes nothing. With a secret, signatures protect it and Host is not checked.
func TestInsecureDevChecksTheHost(t *testing.T) {
	var routed []string
	h, err := intake.New(intake.Options{Insecure: true, Allowed: intake.AllowEveryone(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Router: intake.RouterFunc(func(_ context.Context, ev intake.Event) (intake.Result, error) {
			routed = append(routed, ev.Name)
			return intake.Result{Status: http.StatusAccepted, Reason: "started", Accepted: true}, nil
		})})
	require.NoError(t, err)
	send := func(handler http.Handler, host string) int {
		req := httptest.NewRequest(http.MethodPost, "/webhooks/github", strings.NewReader(`{"action":"opened"}`))
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "pull_request")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		return rec.Code
	}
	cfg := Config{InsecureDev: true, Addr: "127.0.0.1:8080"}
	require.NoError(t, loopback.CheckListen("WEBHOOK_ADDR", cfg.Addr))
	insecure := publicHandler(cfg, h)
	for _, host := range []string{"evil.example", "evil.example:8080", "attacker.localtest.me:8080", "192.168.1.20:8080"} {
		assert.Equal(t, http.StatusMisdirectedRequest, send(insecure, host), host)
	}
	assert.Empty(t, routed, "nothing routed for a rebinding request")
	for _, host := range []string{"127.0.0.1:8080", "localhost:8080", "[::1]:8080"} {
		assert.Equal(t, http.StatusAccepted, send(insecure, host), host)
	}
	assert.Len(t, routed, 3)

	secured := publicHandler(Config{Addr: "0.0.0.0:8080"}, h)
	assert.Equal(t, http.StatusAccepted, send(secured, "drydock.example.com"), "behind a load balancer, any Host")
}

// DRYDOCK_INSECURE_DEV on a loopback address is accepted.
func TestInsecureDevOnLoopbackIsAccepted(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:8080", "localhost:8080", "[::1]:8080"} {
		cfg := Config{InsecureDev: true, Addr: addr, MetricsAddr: "", AllowedOwners: []string{"*"}, MaxBody: 1 << 20, MaxConcurrentBodies: 16,
			ShutdownTimeout: time.Second, ForkLabel: "preview"}
		cfg.Temporal.Address, cfg.Temporal.Namespace = "127.0.0.1:7233", "default"
		assert.NoError(t, cfg.validate(), addr)
		cfg.Addr = "0.0.0.0:8080"
		assert.ErrorContains(t, cfg.validate(), "DRYDOCK_INSECURE_DEV")
	}
}
