package dedalus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseAutosleep(t *testing.T) {
	good := map[string]time.Duration{
		"30s":    30 * time.Second,
		"5m":     5 * time.Minute,
		"2h":     2 * time.Hour,
		"7d3h4s": 7*24*time.Hour + 3*time.Hour + 4*time.Second,
		"1w3d":   10 * 24 * time.Hour,
		"1800":   30 * time.Minute,
		"never":  0,
		"NEVER":  0,
	}
	for in, want := range good {
		got, err := ParseAutosleep(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "0", "-5", "5x", "m", "3h2d", "5m5m", "1.5h", "0s", "5 m"} {
		_, err := ParseAutosleep(in)
		assert.Error(t, err, in)
	}
	assert.Equal(t, "never", FormatAutosleep(0))
	assert.Equal(t, "90", FormatAutosleep(90*time.Second))
}

// fakeAPI answers from a script of handlers, one per request, counting requests.
type fakeAPI struct {
	t     *testing.T
	steps []http.HandlerFunc
	n     atomic.Int32
	keys  []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := int(f.n.Add(1)) - 1
	f.keys = append(f.keys, r.Header.Get(HeaderIdempotencyKey))
	if i >= len(f.steps) {
		f.t.Errorf("unexpected request %d: %s %s", i+1, r.Method, r.URL.Path)
		http.Error(w, "unexpected", 500)
		return
	}
	f.steps[i](w, r)
}

func jsonError(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func machineJSON(id, phase, rev string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", rev)
		fmt.Fprintf(w, `{"machine_id":%q,"vcpu":1,"memory_mib":1024,"storage_gib":10,"desired_state":"running",
			"status":{"phase":%q,"reason":"","retryable":false,"revision":%q,
			"last_transition_at":"2026-01-01T00:00:00Z","last_progress_at":"2026-01-01T00:00:00Z"},"autosleep_seconds":300}`, id, phase, rev)
	}
}

func newFake(t *testing.T, steps ...http.HandlerFunc) (*fakeAPI, *Client) {
	f := &fakeAPI{t: t, steps: steps}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := New(Options{BaseURL: srv.URL, APIKey: "k", MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	require.NoError(t, err)
	return f, c
}

func TestRetryHonoursRetryAfter(t *testing.T) {
	var gap time.Duration
	var first time.Time
	f, c := newFake(t,
		func(w http.ResponseWriter, r *http.Request) {
			first = time.Now()
			jsonError(429, `{"error_code":"RATE_LIMITED","message":"mutation rate limit exceeded","retryable":true,"retry_after_ms":120}`)(w, r)
		},
		func(w http.ResponseWriter, r *http.Request) {
			gap = time.Since(first)
			machineJSON("dm-1", "accepted", "1")(w, r)
		},
	)
	m, err := c.CreateMachine(context.Background(), CreateMachineRequest{VCPU: 1, MemoryMiB: 1024, StorageGiB: 10}, "key-1")
	require.NoError(t, err)
	assert.Equal(t, "dm-1", m.MachineID)
	assert.EqualValues(t, 2, f.n.Load())
	assert.GreaterOrEqual(t, gap, 120*time.Millisecond, "waited out retry_after_ms")
	assert.Equal(t, []string{"key-1", "key-1"}, f.keys, "the retry reuses the idempotency key")
}

func TestNoRetryWithoutIdempotencyKey(t *testing.T) {
	f, c := newFake(t, jsonError(503, `{"error_code":"DEPENDENCY_UNAVAILABLE","message":"runtime unavailable","retryable":true}`))
	_, err := c.DeleteExecution(context.Background(), "dm-1", "ex-1", "")
	ae, ok := AsAPIError(err)
	require.True(t, ok, "typed error: %v", err)
	assert.Equal(t, 503, ae.StatusCode)
	assert.Equal(t, CodeDependencyUnavailable, ae.Code)
	assert.True(t, ae.Retryable)
	assert.EqualValues(t, 1, f.n.Load(), "a mutation without an idempotency key is sent once")
}

func TestMutationsRequireKeyBeforeSending(t *testing.T) {
	f, c := newFake(t)
	ctx := context.Background()
	_, err := c.CreateMachine(ctx, CreateMachineRequest{VCPU: 1, MemoryMiB: 1, StorageGiB: 1}, "")
	assert.ErrorContains(t, err, "idempotency key is required")
	_, err = c.WakeMachine(ctx, "dm-1", Mutation{IfMatch: "3"})
	assert.ErrorContains(t, err, "idempotency key is required")
	_, err = c.CreateExecution(ctx, "dm-1", CreateExecutionRequest{Command: []string{"true"}}, "")
	assert.ErrorContains(t, err, "idempotency key is required")
	_, err = c.CreateMachine(ctx, CreateMachineRequest{VCPU: 1, MemoryMiB: 1, StorageGiB: 1, Autosleep: "soon"}, "k")
	assert.ErrorContains(t, err, "autosleep")
	_, err = c.CreateExecution(ctx, "dm-1", CreateExecutionRequest{}, "k")
	assert.ErrorContains(t, err, "non-empty argv")
	_, err = c.CreatePreview(ctx, "dm-1", CreatePreviewRequest{Port: 70000}, "k")
	assert.ErrorContains(t, err, "out of range")
	assert.EqualValues(t, 0, f.n.Load(), "bad input sends nothing")
}

func TestRetryBoundedAndNonRetryableNotRepeated(t *testing.T) {
	unavailable := jsonError(503, `{"error_code":"DEPENDENCY_UNAVAILABLE","message":"runtime unavailable","retryable":true}`)
	f, c := newFake(t, unavailable, unavailable, unavailable, unavailable)
	_, err := c.GetMachine(context.Background(), "dm-1")
	require.Error(t, err)
	assert.EqualValues(t, 4, f.n.Load(), "MaxAttempts (4) tries, then the error")

	f, c = newFake(t, jsonError(409, `{"error_code":"INVALID_STATE","message":"requested lifecycle transition is invalid for current machine state","retryable":false,"details":{"current_observed_state":"destroyed"}}`))
	_, err = c.WakeMachine(context.Background(), "dm-1", Mutation{IdempotencyKey: "k", IfMatch: "4"})
	assert.True(t, HasCode(err, CodeInvalidState))
	ae, _ := AsAPIError(err)
	assert.Equal(t, "destroyed", ae.Details["current_observed_state"])
	assert.Contains(t, err.Error(), "wake machine dm-1", "errors name the call and object")
	assert.EqualValues(t, 1, f.n.Load())

	// A retry_after beyond MaxRetryAfter is handed back to the caller at once.
	f, c = newFake(t, jsonError(409, `{"error_code":"SLEEP_HOLD_WINDOW_ACTIVE","message":"sleep hold window is active","retryable":true,"retry_after_ms":50000}`))
	_, err = c.SleepMachine(context.Background(), "dm-1", Mutation{IdempotencyKey: "k", IfMatch: "4"})
	ae, ok := AsAPIError(err)
	require.True(t, ok)
	assert.Equal(t, 50*time.Second, ae.RetryAfter)
	assert.EqualValues(t, 1, f.n.Load())
}

func TestProblemJSONError(t *testing.T) {
	_, c := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(404)
		io.WriteString(w, `{"type":"about:blank","title":"Not Found","status":404,"detail":"machine dm-9 not found"}`)
	})
	_, err := c.GetMachine(context.Background(), "dm-9")
	assert.True(t, IsNotFound(err))
	ae, _ := AsAPIError(err)
	require.NotNil(t, ae.Problem)
	assert.Equal(t, "machine dm-9 not found", ae.Message)
	assert.False(t, ae.Retryable)
}

func TestTransportErrorRetriedOnlyWhenSafe(t *testing.T) {
	// A listener that accepts and immediately resets connections.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var conns atomic.Int32
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	}()
	c, err := New(Options{BaseURL: "http://" + ln.Addr().String(), APIKey: "k", MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	require.NoError(t, err)
	_, err = c.GetMachine(context.Background(), "dm-1")
	assert.True(t, IsTransport(err), "%v", err)
	assert.EqualValues(t, 4, conns.Load())

	conns.Store(0)
	_, err = c.DeletePreview(context.Background(), "dm-1", "pv-1", "")
	assert.True(t, IsTransport(err))
	assert.EqualValues(t, 1, conns.Load(), "no key: not retried")
}

func TestContextCancelsRetries(t *testing.T) {
	_, c := newFake(t, jsonError(429, `{"error_code":"RATE_LIMITED","message":"slow down","retryable":true,"retry_after_ms":5000}`))
	c.opt.MaxRetryAfter = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.GetMachine(ctx, "dm-1")
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
	assert.Less(t, time.Since(start), 2*time.Second)
}

func TestStatusStreamParsing(t *testing.T) {
	ev := func(rev, phase string) string {
		return fmt.Sprintf(`{"machine_id":"dm-1","vcpu":1,"memory_mib":1,"storage_gib":1,"desired_state":"running","status":{"phase":%q,"reason":"","retryable":false,"revision":%q,"last_transition_at":"2026-01-01T00:00:00Z","last_progress_at":"2026-01-01T00:00:00Z"}}`, phase, rev)
	}
	var lastID string
	_, c := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		lastID = r.Header.Get(HeaderLastEventID)
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, ": keepalive\n\nid: 2\nevent: status\ndata: %s\n\nevent: other\ndata: {}\n\nid: 3\r\nevent: status\r\ndata: %s\r\n\r\n", ev("2", "starting"), ev("3", "running"))
	})
	s, err := c.WatchMachine(context.Background(), "dm-1", "1")
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, "1", lastID)
	m, err := s.Next()
	require.NoError(t, err)
	assert.Equal(t, PhaseStarting, m.Status.Phase)
	m, err = s.Next()
	require.NoError(t, err)
	assert.Equal(t, PhaseRunning, m.Status.Phase, "unknown event types are skipped, CRLF accepted")
	assert.Equal(t, "3", s.LastEventID())
	_, err = s.Next()
	assert.ErrorIs(t, err, io.EOF)
}

func TestWaitForPhaseFallsBackToPolling(t *testing.T) {
	// The stream endpoint answers 200 with JSON (as a buffering proxy might):
	// the client must notice and poll instead.
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/status/stream") {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{}`)
			return
		}
		if gets.Add(1) < 3 {
			machineJSON("dm-1", "starting", "2")(w, r)
			return
		}
		machineJSON("dm-1", "running", "3")(w, r)
	}))
	defer srv.Close()
	c, err := New(Options{BaseURL: srv.URL, APIKey: "k", PollInterval: 5 * time.Millisecond})
	require.NoError(t, err)
	m, err := c.WaitForPhase(context.Background(), "dm-1", PhaseRunning)
	require.NoError(t, err)
	assert.Equal(t, "3", m.Status.Revision)
}

func TestNewValidatesOptions(t *testing.T) {
	_, err := New(Options{})
	assert.ErrorContains(t, err, "DEDALUS_API_KEY")
	_, err = New(Options{APIKey: "k", BaseURL: "dcs.example"})
	assert.ErrorContains(t, err, "DEDALUS_BASE_URL")
	c, err := New(Options{APIKey: "k"})
	require.NoError(t, err)
	assert.Equal(t, DefaultBaseURL, c.BaseURL())
}

func TestRouteTemplateHidesIDs(t *testing.T) {
	for path, want := range map[string]string{
		"/v1/machines":                              "/v1/machines",
		"/v1/machines/dm-1":                         "/v1/machines/{id}",
		"/v1/machines/dm-1/wake":                    "/v1/machines/{id}/wake",
		"/v1/machines/dm-1/status/stream":           "/v1/machines/{id}/status/stream",
		"/v1/machines/dm-1/executions/ex-9/output":  "/v1/machines/{id}/executions/{id}/output",
		"/v1/machines/dm-1/previews/pv-3":           "/v1/machines/{id}/previews/{id}",
		"/v1/machines/dm-1/terminals/t-1/stream":    "/v1/machines/{id}/terminals/{id}/stream",
		"/v1/machines/dm%2F1/ssh/s-1":               "/v1/machines/{id}/ssh/{id}",
		"/v1/machines/dm-1/artifacts":               "/v1/machines/{id}/artifacts",
		"/v1/machines/dm-1/executions":              "/v1/machines/{id}/executions",
		"/v1/machines/dm-1/executions/ex-9/events":  "/v1/machines/{id}/executions/{id}/events",
		"/v1/machines/dm-1/executions/ex-9":         "/v1/machines/{id}/executions/{id}",
		"/v1/machines/dm-1/previews":                "/v1/machines/{id}/previews",
		"/v1/machines/dm-1/sleep":                   "/v1/machines/{id}/sleep",
		"/v1/machines/dm-1/ssh":                     "/v1/machines/{id}/ssh",
		"/v1/machines/dm-1/terminals":               "/v1/machines/{id}/terminals",
		"/v1/machines/dm-1/artifacts/art-2":         "/v1/machines/{id}/artifacts/{id}",
		"/v1/machines/dm-1/terminals/t-1":           "/v1/machines/{id}/terminals/{id}",
		"/v1/machines/dm-1/previews/pv-3/whatever":  "/v1/machines/{id}/previews/{id}/whatever",
		"/v1/machines/dm-1/executions/ex-9/output/": "/v1/machines/{id}/executions/{id}/output/",
	} {
		assert.Equal(t, want, RouteTemplate(path), path)
	}
}

// OnError hears of every failed attempt, retried or not, by operation
// template and code, and never of the key.
func TestOnErrorCountsEveryFailedAttempt(t *testing.T) {
	_, c := newFake(t,
		jsonError(503, `{"error_code":"DEPENDENCY_UNAVAILABLE","message":"runtime unavailable","retryable":true}`),
		machineJSON("dm-1", "running", "2"),
	)
	var got []string
	c.opt.OnError = func(op, code string) { got = append(got, op+" "+code) }
	_, err := c.GetMachine(context.Background(), "dm-1")
	require.NoError(t, err)
	assert.Equal(t, []string{"GET /v1/machines/{id} DEPENDENCY_UNAVAILABLE"}, got)
	assert.Equal(t, "transport", ErrorCode(&transportError{op: "x", err: io.EOF}))
	assert.Equal(t, "404", ErrorCode(&APIError{StatusCode: 404}))
	assert.Equal(t, "other", ErrorCode(errors.New("boom")))
}

// OnQuotaExceeded hears of the quota refusals only, by operation template,
// while OnError keeps hearing of every failed attempt.
func TestOnQuotaExceededHearsOnlyQuotaRefusals(t *testing.T) {
	_, c := newFake(t,
		jsonError(503, `{"error_code":"DEPENDENCY_UNAVAILABLE","message":"runtime unavailable","retryable":true}`),
		jsonError(403, `{"error_code":"QUOTA_EXCEEDED","message":"machine quota reached"}`),
	)
	var errs, quota []string
	c.opt.OnError = func(op, code string) { errs = append(errs, code) }
	c.opt.OnQuotaExceeded = func(op string) { quota = append(quota, op) }
	_, err := c.GetMachine(context.Background(), "dm-1")
	require.Error(t, err)
	assert.Equal(t, []string{"DEPENDENCY_UNAVAILABLE", "QUOTA_EXCEEDED"}, errs)
	assert.Equal(t, []string{"GET /v1/machines/{id}"}, quota)
}
