package emulator

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
)

func TestAutosleep(t *testing.T) {
	t.Parallel()
	e := start(t)
	id := e.running(map[string]any{"vcpu": 1, "memory_mib": 512, "storage_gib": 1, "autosleep": "1s"}).MachineID
	t0 := time.Now()
	m, _ := e.get(id)
	assert.Equal(t, int64(1), m.AutosleepSeconds)
	m = e.waitPhase(id, dedalus.PhaseSleeping)
	assert.GreaterOrEqual(t, time.Since(t0), 900*time.Millisecond)
	assert.Less(t, time.Since(t0), 3*time.Second)
	assert.Contains(t, m.Status.Reason, "autosleep")
	assert.Equal(t, dedalus.DesiredSleeping, m.DesiredState)
	st := e.stats()
	assert.Equal(t, int64(1), st.Autosleeps)
	assert.Equal(t, int64(1), st.Sleeps)

	// "never" disables it.
	id = e.running(map[string]any{"vcpu": 1, "memory_mib": 512, "storage_gib": 1, "autosleep": "never"}).MachineID
	m, _ = e.get(id)
	assert.Equal(t, int64(0), m.AutosleepSeconds)
}

// Sub-second windows through Config.DefaultAutosleep keep these tests short.
func TestAutosleepExecutionIsActivity(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *Config) { c.DefaultAutosleep = 300 * time.Millisecond })
	id := e.running(nil).MachineID
	x := e.exec(id, map[string]any{"command": []string{"sleep", "0.6"}})
	time.Sleep(450 * time.Millisecond)
	m, _ := e.get(id)
	assert.Equal(t, dedalus.PhaseRunning, m.Status.Phase, "a running execution keeps the machine awake")
	x = e.waitExec(id, x.ExecutionID)
	finished := time.Now()
	e.waitPhase(id, dedalus.PhaseSleeping)
	assert.GreaterOrEqual(t, time.Since(finished), 200*time.Millisecond)
	assert.Equal(t, int64(1), e.stats().Autosleeps)
}

func TestAutosleepPreviewTrafficIsActivity(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *Config) { c.DefaultAutosleep = 300 * time.Millisecond })
	id := e.running(nil).MachineID
	startApp(t, e, id)
	p := previewOf(t, e, id)
	deadline := time.Now().Add(700 * time.Millisecond)
	for time.Now().Before(deadline) {
		res, err := http.Get(p.URL + "/")
		if err == nil {
			res.Body.Close()
		}
		time.Sleep(50 * time.Millisecond)
	}
	m, _ := e.get(id)
	assert.Equal(t, dedalus.PhaseRunning, m.Status.Phase, "preview traffic keeps the machine awake")
	e.waitPhase(id, dedalus.PhaseSleeping)
	assert.Equal(t, int64(1), e.stats().Autosleeps)
	code, _, hdr := getText(t, p.URL+"/")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "1", hdr.Get("Retry-After"))
}

func TestDeleteLeavesNothing(t *testing.T) {
	t.Parallel()
	e := start(t)
	id := e.running(nil).MachineID
	startApp(t, e, id)
	x, _ := e.run(id, map[string]any{"command": []string{"sh", "-c", "setsid sleep 300 >/dev/null 2>&1 & (sleep 301 &) ; echo ok > file"}})
	require.Equal(t, dedalus.ExecSucceeded, x.Status)
	running := e.exec(id, map[string]any{"command": []string{"sleep", "300"}})
	p := previewOf(t, e, id)
	dir := filepath.Join(e.s.DataDir(), "machines", id)
	assert.FileExists(t, filepath.Join(dir, "root", "root", "file"))
	eventually(t, 5*time.Second, "4 processes", func() bool { return len(procsOf(id)) >= 4 })

	// Sleep first: frozen processes must die too.
	require.Equal(t, http.StatusAccepted, e.do("POST", "/v1/machines/"+id+"/sleep", nil).status)
	e.waitPhase(id, dedalus.PhaseSleeping)
	r := e.do("DELETE", "/v1/machines/"+id, nil)
	require.Equal(t, http.StatusAccepted, r.status)
	m := e.waitPhase(id, dedalus.PhaseDestroyed)
	assert.Equal(t, dedalus.DesiredDestroyed, m.DesiredState)
	assert.Empty(t, procsOf(id))
	assert.NoDirExists(t, dir)
	_, err := (&http.Client{Timeout: time.Second}).Get(p.URL + "/")
	assert.Error(t, err)
	r = e.do("GET", "/v1/machines/"+id+"/previews/"+p.PreviewID, nil)
	var gp dedalus.Preview
	r.json(t, &gp)
	assert.Equal(t, dedalus.PreviewClosed, gp.Status)
	xr := e.waitExec(id, running.ExecutionID)
	assert.Equal(t, dedalus.ExecFailed, xr.Status)
	assert.Equal(t, ExecErrMachineDestroyed, xr.ErrorCode)
	st := e.stats()
	assert.Equal(t, 0, st.LiveMachines)
	assert.Equal(t, 0, st.PreviewsLive)
}

func TestCloseKillsEverything(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	s, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	e := &env{t: t, s: s, url: s.URL(), http: &http.Client{Timeout: 10 * time.Second}}
	id := e.running(nil).MachineID
	startApp(t, e, id)
	e.exec(id, map[string]any{"command": []string{"sleep", "300"}})
	p := previewOf(t, e, id)
	eventually(t, 5*time.Second, "processes", func() bool { return len(procsOf(id)) >= 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, s.Close(ctx))
	assert.Empty(t, procsOf(id))
	assert.NoDirExists(t, s.DataDir())
	_, err = (&http.Client{Timeout: time.Second}).Get(p.URL)
	assert.Error(t, err)
	_, err = (&http.Client{Timeout: time.Second}).Get(s.URL() + "/_local/stats")
	assert.Error(t, err)
	require.NoError(t, s.Close(ctx), "Close is idempotent")
}

func TestOwnDataDirKept(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A machine left by a previous run is reaped at start.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "machines", "dm-stale", "root"), 0o755))
	e := start(t, func(c *Config) { c.DataDir = dir })
	assert.NoDirExists(t, filepath.Join(dir, "machines", "dm-stale"))
	id := e.running(nil).MachineID
	assert.DirExists(t, filepath.Join(dir, "machines", id, "root", "root"))
}

func TestFaultInjection(t *testing.T) {
	t.Parallel()
	e := start(t)
	id := e.create(nil).MachineID
	checkInjected503(t, e, id)
	checkInjected429(t, e)

	// Fresh connections: Go's transport transparently retries requests that
	// carry an Idempotency-Key when a reused connection fails.
	e.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	checkInjectedResets(t, e)

	// Latency delays the answer.
	require.NoError(t, e.s.SetFaults(Faults{Routes: map[string]FaultRule{"listMachines": {LatencyMS: 150}}}))
	t0 := time.Now()
	require.Equal(t, http.StatusOK, e.do("GET", "/v1/machines", nil).status)
	assert.GreaterOrEqual(t, time.Since(t0), 150*time.Millisecond)
}

// checkInjected503 injects 503s on half of getMachine (machine id) and
// checks their rate, body and count, and that other routes are spared.
func checkInjected503(t *testing.T, e *env, id string) {
	t.Helper()
	require.NoError(t, e.s.SetFaults(Faults{Routes: map[string]FaultRule{"getMachine": {Error503: 0.5}}}))
	n503 := 0
	const n = 200
	for range n {
		r := e.do("GET", "/v1/machines/"+id, nil)
		switch r.status {
		case http.StatusServiceUnavailable:
			n503++
			eb := r.errBody(t)
			require.Equal(t, dedalus.ErrorBody{ErrorCode: dedalus.CodeDependencyUnavailable, Message: "runtime unavailable", Retryable: true}, eb)
		case http.StatusOK:
		default:
			t.Fatalf("status %d", r.status)
		}
	}
	assert.InDelta(t, n/2, n503, n*0.15, "503 rate")
	assert.EqualValues(t, n503, e.stats().FaultsInjected, "every injected fault is counted")
	// Other routes are unaffected.
	assert.Equal(t, http.StatusOK, e.do("GET", "/v1/machines", nil).status)
}

// checkInjected429 injects 429s on every route, with and without a
// Retry-After, and checks their body.
func checkInjected429(t *testing.T, e *env) {
	t.Helper()
	require.NoError(t, e.s.SetFaults(Faults{Routes: map[string]FaultRule{"*": {Error429: 1, RetryAfterMS: 33}}}))
	r := e.do("GET", "/v1/machines", nil)
	require.Equal(t, http.StatusTooManyRequests, r.status)
	assert.Equal(t, dedalus.ErrorBody{ErrorCode: dedalus.CodeRateLimited, Message: "mutation rate limit exceeded", Retryable: true, RetryAfterMS: 33}, r.errBody(t))
	require.NoError(t, e.s.SetFaults(Faults{Routes: map[string]FaultRule{"*": {Error429: 1}}}))
	r = e.do("GET", "/v1/machines", nil)
	assert.Equal(t, int64(100), r.errBody(t).RetryAfterMS)
}

// checkInjectedResets injects connection resets on createMachine, before
// and after the machine is made, and checks that a retry with the same
// Idempotency-Key replays the lost answer. The server holds one machine
// before.
func checkInjectedResets(t *testing.T, e *env) {
	t.Helper()
	// reset: the connection dies before anything happens.
	require.NoError(t, e.s.SetFaults(Faults{Routes: map[string]FaultRule{"createMachine": {Reset: 1}}}))
	before := e.stats().Creates
	body := map[string]any{"vcpu": 1, "memory_mib": 256, "storage_gib": 1}
	key := e.newKey()
	_, err := e.raw("POST", "/v1/machines", body, h{"Authorization", "Bearer " + testKey, "Idempotency-Key", key})
	require.Error(t, err)
	assert.Equal(t, before, e.stats().Creates)

	// reset_after: the machine is created, the answer is lost; a retry with
	// the same key replays it.
	require.NoError(t, e.s.SetFaults(Faults{Routes: map[string]FaultRule{"createMachine": {ResetAfter: 1}}}))
	_, err = e.raw("POST", "/v1/machines", body, h{"Authorization", "Bearer " + testKey, "Idempotency-Key", key})
	require.Error(t, err)
	assert.True(t, isReset(err), "want a connection reset, got %v", err)
	assert.Equal(t, before+1, e.stats().Creates)
	require.NoError(t, e.s.SetFaults(Faults{}))
	r := e.do("POST", "/v1/machines", body, "Idempotency-Key", key)
	require.Equal(t, http.StatusAccepted, r.status)
	st := e.stats()
	assert.Equal(t, before+1, st.Creates)
	assert.Equal(t, int64(1), st.IdempotentReplays)
	assert.Equal(t, 2, st.LiveMachines)
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "EOF")
}

func TestStatsAwakeTime(t *testing.T) {
	t.Parallel()
	e := start(t)
	m := e.running(map[string]any{"vcpu": 4, "memory_mib": 512, "storage_gib": 1})
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, http.StatusAccepted, e.do("POST", "/v1/machines/"+m.MachineID+"/sleep", nil).status)
	e.waitPhase(m.MachineID, dedalus.PhaseSleeping)
	st1 := e.stats()
	require.Len(t, st1.Machines, 1)
	ms := st1.Machines[0]
	assert.Equal(t, m.MachineID, ms.MachineID)
	assert.Equal(t, dedalus.PhaseSleeping, ms.Phase)
	assert.Equal(t, float64(4), ms.VCPU)
	assert.Greater(t, ms.AwakeSeconds, 0.1)
	assert.Less(t, ms.AwakeSeconds, 2.0)
	assert.InDelta(t, 4*st1.AwakeSeconds, st1.AwakeVCPUSeconds, 1e-9)
	time.Sleep(100 * time.Millisecond)
	st2 := e.stats()
	assert.Equal(t, st1.AwakeSeconds, st2.AwakeSeconds, "no awake time accrues while asleep")

	require.Equal(t, http.StatusAccepted, e.do("POST", "/v1/machines/"+m.MachineID+"/wake", nil).status)
	e.waitPhase(m.MachineID, dedalus.PhaseRunning)
	time.Sleep(50 * time.Millisecond)
	st3 := e.stats()
	assert.Greater(t, st3.AwakeSeconds, st2.AwakeSeconds+0.04, "the running interval so far counts")
	assert.Equal(t, int64(1), st3.Wakes)
	assert.Equal(t, int64(1), st3.WakeRequests)
	assert.Equal(t, int64(1), st3.Sleeps)

	e.s.ResetStats()
	st4 := e.Stats()
	assert.Equal(t, int64(0), st4.Wakes)
	assert.Less(t, st4.AwakeSeconds, 0.05)
	assert.Equal(t, 1, st4.LiveMachines)
}

// Stats is the Go accessor, for symmetry with the HTTP endpoint.
func (e *env) Stats() Stats { return e.s.Stats() }
