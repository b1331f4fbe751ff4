package dedalus_test

// These tests drive every client method against the local emulator over real
// HTTP. Every exchange passes through a transport that validates requests,
// responses and streamed events against the vendored OpenAPI contract
// (dedalus/openapi), so the client and the emulator are both held to the spec.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/emulator"
	"github.com/drydock-dev/drydock/internal/testing/apispec"
)

// previewApp is the demo app (examples/previewapp/app.py): it keeps a counter in memory.
var previewApp, _ = filepath.Abs("../examples/previewapp/app.py")

type env struct {
	emu *emulator.Server
	c   *dedalus.Client
	tr  *apispec.Transport
}

// roundTripFunc lets a test observe each exchange below the validator.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type envOpts struct {
	cfg    func(*emulator.Config)
	copts  func(*dedalus.Options)
	tapped func(next http.RoundTripper) http.RoundTripper
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	cfg := emulator.Config{
		Addr:       "127.0.0.1:0",
		BootDelay:  100 * time.Millisecond,
		WakeDelay:  100 * time.Millisecond,
		SleepDelay: 50 * time.Millisecond,
		Seed:       1,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	emu, err := emulator.New(cfg)
	require.NoError(t, err)
	require.NoError(t, emu.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, emu.Close(ctx))
	})

	spec, err := apispec.Contract()
	require.NoError(t, err)
	var base http.RoundTripper = http.DefaultTransport.(*http.Transport).Clone()
	if o.tapped != nil {
		base = o.tapped(base)
	}
	tr := spec.Transport(base)
	t.Cleanup(func() {
		for _, v := range tr.Violations() {
			t.Errorf("contract violation: %s", v)
		}
	})
	opts := dedalus.Options{
		BaseURL: emu.URL(), APIKey: emu.APIKey(), HTTPClient: &http.Client{Transport: tr},
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, PollInterval: 20 * time.Millisecond,
	}
	if o.copts != nil {
		o.copts(&opts)
	}
	c, err := dedalus.New(opts)
	require.NoError(t, err)
	return &env{emu: emu, c: c, tr: tr}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var small = dedalus.CreateMachineRequest{VCPU: 1, MemoryMiB: 1024, StorageGiB: 10}

func (e *env) running(t *testing.T, key string, req dedalus.CreateMachineRequest) *dedalus.Machine {
	t.Helper()
	ctx := ctxT(t)
	m, err := e.c.CreateMachine(ctx, req, key)
	require.NoError(t, err)
	m, err = e.c.WaitForPhase(ctx, m.MachineID, dedalus.PhaseRunning)
	require.NoError(t, err)
	return m
}

func TestMachineLifecycle(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := ctxT(t)

	m, err := e.c.CreateMachine(ctx, dedalus.CreateMachineRequest{VCPU: 2, MemoryMiB: 4096, StorageGiB: 20, Autosleep: "10m"}, "create-1")
	require.NoError(t, err)
	assert.Equal(t, dedalus.PhaseAccepted, m.Status.Phase, "create is asynchronous")
	assert.Equal(t, dedalus.DesiredRunning, m.DesiredState)
	assert.EqualValues(t, 600, m.AutosleepSeconds)
	created := m.Status.Revision

	m, err = e.c.WaitForPhase(ctx, m.MachineID, dedalus.PhaseRunning)
	require.NoError(t, err)
	assert.NotEqual(t, created, m.Status.Revision, "transitions bump the revision")

	got, err := e.c.GetMachine(ctx, m.MachineID)
	require.NoError(t, err)
	assert.Equal(t, m.Status.Revision, got.Status.Revision)
	assert.Equal(t, 2.0, got.VCPU)

	as := "90s"
	up, err := e.c.UpdateMachine(ctx, m.MachineID, dedalus.UpdateMachineRequest{Autosleep: &as}, dedalus.Mutation{IdempotencyKey: "patch-1"})
	require.NoError(t, err)
	assert.EqualValues(t, 90, up.AutosleepSeconds)

	slept, err := e.c.SleepAndWait(ctx, m.MachineID, "sleep-1")
	require.NoError(t, err)
	assert.Equal(t, dedalus.PhaseSleeping, slept.Status.Phase)

	woke, err := e.c.WakeAndWait(ctx, m.MachineID, "wake-1")
	require.NoError(t, err)
	assert.Equal(t, dedalus.PhaseRunning, woke.Status.Phase)

	// Waking a running machine makes no wake call at all.
	before := e.emu.Stats().WakeRequests
	_, err = e.c.WakeAndWait(ctx, m.MachineID, "wake-2")
	require.NoError(t, err)
	assert.Equal(t, before, e.emu.Stats().WakeRequests)

	_, err = e.c.DeleteMachine(ctx, m.MachineID, dedalus.Mutation{IdempotencyKey: "delete-1"})
	require.NoError(t, err)
	gone, err := e.c.WaitForPhase(ctx, m.MachineID, dedalus.PhaseDestroyed)
	require.NoError(t, err)
	assert.Equal(t, dedalus.DesiredDestroyed, gone.DesiredState)

	st := e.emu.Stats()
	assert.EqualValues(t, 1, st.Creates)
	assert.EqualValues(t, 1, st.Wakes)
	assert.EqualValues(t, 1, st.Sleeps)
	assert.EqualValues(t, 1, st.Deletes)
	assert.Equal(t, 0, st.LiveMachines)
	assert.Greater(t, e.tr.Exchanges(), 8)
}

func TestListPagingAndIterator(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := ctxT(t)
	ids := map[string]bool{}
	for i := range 5 {
		m, err := e.c.CreateMachine(ctx, small, fmt.Sprintf("list-%d", i))
		require.NoError(t, err)
		ids[m.MachineID] = true
	}
	page, err := e.c.ListMachines(ctx, dedalus.ListOptions{Limit: 2})
	require.NoError(t, err)
	assert.Len(t, page.Items, 2)
	assert.NotEmpty(t, page.NextCursor)
	assert.False(t, page.Items[0].CreatedAt.IsZero())

	seen := map[string]bool{}
	for m, err := range e.c.AllMachines(ctx, 2) {
		require.NoError(t, err)
		assert.False(t, seen[m.MachineID], "no machine twice across pages")
		seen[m.MachineID] = true
	}
	assert.Equal(t, ids, seen)
}

func TestErrorCodes(t *testing.T) {
	e := newEnv(t, envOpts{cfg: func(c *emulator.Config) { c.OrgID = "org-a" }})
	ctx := ctxT(t)

	bad, err := dedalus.New(dedalus.Options{BaseURL: e.emu.URL(), APIKey: "wrong", HTTPClient: &http.Client{Transport: e.tr}})
	require.NoError(t, err)
	_, err = bad.GetMachine(ctx, "dm-x")
	assert.True(t, dedalus.HasCode(err, dedalus.CodeAuthInvalid), "%v", err)
	ae, _ := dedalus.AsAPIError(err)
	assert.Equal(t, 401, ae.StatusCode)

	other, err := dedalus.New(dedalus.Options{BaseURL: e.emu.URL(), APIKey: e.emu.APIKey(), OrgID: "org-b", HTTPClient: &http.Client{Transport: e.tr}})
	require.NoError(t, err)
	_, err = other.ListMachines(ctx, dedalus.ListOptions{})
	assert.True(t, dedalus.HasCode(err, dedalus.CodeAuthOrgMismatch), "%v", err)

	_, err = e.c.GetMachine(ctx, "dm-does-not-exist")
	assert.True(t, dedalus.IsNotFound(err), "%v", err)
	ae, _ = dedalus.AsAPIError(err)
	require.NotNil(t, ae.Problem, "404 is a problem+json body")

	m := e.running(t, "err-create", small)

	// Same key, other body: refused, and nothing is created.
	_, err = e.c.CreateMachine(ctx, dedalus.CreateMachineRequest{VCPU: 4, MemoryMiB: 1024, StorageGiB: 10}, "err-create")
	assert.True(t, dedalus.HasCode(err, dedalus.CodeIdempotencyKeyReused), "%v", err)
	assert.False(t, dedalus.IsRetryable(err))
	assert.EqualValues(t, 1, e.emu.Stats().Creates)

	// A stale revision.
	_, err = e.c.SleepMachine(ctx, m.MachineID, dedalus.Mutation{IdempotencyKey: "stale", IfMatch: "1"})
	assert.True(t, dedalus.HasCode(err, dedalus.CodeRevisionMismatch), "%v", err)
	ae, _ = dedalus.AsAPIError(err)
	assert.True(t, ae.Retryable)
	assert.Equal(t, m.Status.Revision, ae.Details["expected_revision"])

	// An impossible transition.
	_, err = e.c.DeleteMachine(ctx, m.MachineID, dedalus.Mutation{IdempotencyKey: "err-delete"})
	require.NoError(t, err)
	_, err = e.c.WaitForPhase(ctx, m.MachineID, dedalus.PhaseDestroyed)
	require.NoError(t, err)
	_, err = e.c.WakeMachine(ctx, m.MachineID, dedalus.Mutation{IdempotencyKey: "err-wake"})
	assert.True(t, dedalus.HasCode(err, dedalus.CodeInvalidState), "%v", err)
	_, err = e.c.WakeAndWait(ctx, m.MachineID, "err-wake-2")
	var pe *dedalus.PhaseError
	assert.True(t, errors.As(err, &pe), "waking a destroyed machine: %v", err)
}

func TestInFlightKeyCoalescesConcurrentCreates(t *testing.T) {
	// Attempts enough to outlast the first create on a loaded machine (20
	// were not, in a CI run beside other work: each in-flight answer asks
	// for 250 ms): the test is about coalescing, not about how long the
	// attempts last.
	e := newEnv(t, envOpts{copts: func(o *dedalus.Options) { o.MaxAttempts = 400 }})
	require.NoError(t, e.emu.SetFaults(emulator.Faults{Routes: map[string]emulator.FaultRule{
		"createMachine": {LatencyMS: 300},
	}}))
	ctx := ctxT(t)
	var wg sync.WaitGroup
	ids := make([]string, 4)
	errs := make([]error, 4)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := e.c.CreateMachine(ctx, small, "same-key")
			errs[i] = err
			if err == nil {
				ids[i] = m.MachineID
			}
		}()
	}
	wg.Wait()
	for i := range ids {
		require.NoError(t, errs[i], "429 in-flight answers are retried after retry_after_ms")
		assert.Equal(t, ids[0], ids[i])
	}
	st := e.emu.Stats()
	assert.EqualValues(t, 1, st.Creates)
	assert.EqualValues(t, 3, st.IdempotentReplays)
}

func TestRetryAfterFromServerIsHonoured(t *testing.T) {
	var mu sync.Mutex
	var gets []time.Time
	var emu *emulator.Server
	e := newEnv(t, envOpts{tapped: func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := next.RoundTrip(r)
			if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/machines/") {
				mu.Lock()
				gets = append(gets, time.Now())
				if resp != nil && resp.StatusCode == 429 && len(gets) == 2 {
					require.NoError(t, emu.SetFaults(emulator.Faults{})) // the third try succeeds
				}
				mu.Unlock()
			}
			return resp, err
		})
	}})
	emu = e.emu
	ctx := ctxT(t)
	m := e.running(t, "ra", small)
	mu.Lock()
	gets = nil
	mu.Unlock()
	require.NoError(t, e.emu.SetFaults(emulator.Faults{Routes: map[string]emulator.FaultRule{
		"getMachine": {Error429: 1, RetryAfterMS: 150},
	}}))
	got, err := e.c.GetMachine(ctx, m.MachineID)
	require.NoError(t, err)
	assert.Equal(t, m.MachineID, got.MachineID)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, gets, 3)
	for i := 1; i < 3; i++ {
		assert.GreaterOrEqual(t, gets[i].Sub(gets[i-1]), 140*time.Millisecond, "waited retry_after_ms before retry %d", i)
	}
}

// A create whose answer is lost (the server acted, the connection died) is
// retried with the same key: one machine, and a later process with the same
// key (a crashed worker's successor) finds that same machine.
func TestCreateReplayAfterLostResponse(t *testing.T) {
	var emu *emulator.Server
	var resets atomic.Int32
	e := newEnv(t, envOpts{tapped: func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := next.RoundTrip(r)
			if err != nil && r.Method == http.MethodPost && resets.Add(1) == 1 {
				require.NoError(t, emu.SetFaults(emulator.Faults{}))
			}
			return resp, err
		})
	}})
	emu = e.emu
	require.NoError(t, emu.SetFaults(emulator.Faults{Routes: map[string]emulator.FaultRule{"createMachine": {ResetAfter: 1}}}))
	ctx := ctxT(t)

	m, err := e.c.CreateMachine(ctx, small, "crash-key")
	require.NoError(t, err)
	assert.EqualValues(t, 1, resets.Load(), "the first answer was lost")

	successor, err := dedalus.New(dedalus.Options{BaseURL: emu.URL(), APIKey: emu.APIKey(), HTTPClient: &http.Client{Transport: e.tr}})
	require.NoError(t, err)
	again, err := successor.CreateMachine(ctx, small, "crash-key")
	require.NoError(t, err)
	assert.Equal(t, m.MachineID, again.MachineID)

	st := emu.Stats()
	assert.EqualValues(t, 1, st.Creates)
	assert.EqualValues(t, 2, st.IdempotentReplays)
	assert.Equal(t, 1, st.LiveMachines)
}

func TestStatusStreamFollowsBoot(t *testing.T) {
	e := newEnv(t, envOpts{cfg: func(c *emulator.Config) { c.BootDelay = 300 * time.Millisecond }})
	ctx := ctxT(t)
	m, err := e.c.CreateMachine(ctx, small, "stream")
	require.NoError(t, err)
	s, err := e.c.WatchMachine(ctx, m.MachineID, "")
	require.NoError(t, err)
	defer s.Close()
	var phases []dedalus.MachinePhase
	last := 0
	for {
		ev, err := s.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		var rev int
		fmt.Sscan(ev.Status.Revision, &rev)
		assert.Greater(t, rev, last, "revisions increase")
		last = rev
		phases = append(phases, ev.Status.Phase)
	}
	require.NotEmpty(t, phases)
	assert.Equal(t, dedalus.PhaseRunning, phases[len(phases)-1], "the stream closes once running")
	assert.Contains(t, phases, dedalus.PhaseStarting)
	assert.Equal(t, fmt.Sprint(last), s.LastEventID())
	assert.Greater(t, e.tr.Events(), 0, "streamed events were validated against LifecycleResponse")
}
