package emulator

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
	"github.com/drydock-dev/drydock/internal/testing/apispec"
)

// TestContractConformance drives every implemented route, success and error
// answers alike, through the contract validator: every request is valid, so
// every violation is the emulator's.
func TestContractConformance(t *testing.T) {
	t.Parallel()
	spec, err := apispec.Contract()
	require.NoError(t, err)
	e := start(t, func(c *Config) { c.BootDelay = 60 * time.Millisecond })
	tr := spec.Transport(&http.Transport{DisableKeepAlives: true})
	e.http = &http.Client{Timeout: 20 * time.Second, Transport: tr}

	m := e.create(map[string]any{"vcpu": 1, "memory_mib": 512, "storage_gib": 1, "autosleep": "5m"})
	id := m.MachineID
	base := "/v1/machines/" + id
	res, err := e.http.Do(authReq(t, e, "GET", base+"/status/stream"))
	require.NoError(t, err)
	b, err := readAll(res)
	require.NoError(t, err)
	res.Body.Close()
	assert.Contains(t, string(b), "event: status")
	e.waitPhase(id, dedalus.PhaseRunning)
	e.do("GET", "/v1/machines?limit=1", nil)
	e.do("GET", base, nil)
	e.do("PATCH", base, map[string]any{"memory_mib": 1024, "autosleep": "never"}, "If-Match", "3")
	e.do("PATCH", base, map[string]any{"vcpu": 2}, "If-Match", "1") // 409 REVISION_MISMATCH
	e.do("GET", "/v1/machines/dm-nope", nil)                        // 404 problem

	driveExecutionRoutes(t, e, id)
	drivePreviewRoutes(t, e, id)
	driveKeyInFlightAndReuse(t, e, base)
	e.waitPhase(id, dedalus.PhaseSleeping)
	e.do("POST", base+"/sleep", nil, "If-Match", "*") // 200 no-op
	e.do("POST", base+"/wake", nil, "If-Match", "*")  // 202
	e.waitPhase(id, dedalus.PhaseRunning)
	e.do("DELETE", base, nil, "If-Match", "*") // 202
	e.waitPhase(id, dedalus.PhaseDestroyed)
	e.do("POST", base+"/wake", nil, "If-Match", "*") // 409 INVALID_STATE
	e.do("DELETE", base, nil, "If-Match", "*")       // 200

	for _, v := range tr.Violations() {
		t.Errorf("contract violation: %s", v)
	}
	assert.Greater(t, tr.Exchanges(), 30)
}

// driveExecutionRoutes drives the execution routes of machine id: runs
// that succeed and fail, events, list, a missing execution, a cancel.
func driveExecutionRoutes(t *testing.T, e *env, id string) {
	t.Helper()
	base := "/v1/machines/" + id
	x, _ := e.run(id, map[string]any{"command": []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, "env": map[string]string{"A": "b"}, "cwd": "/", "stdin": "x", "timeout_ms": 5000})
	e.do("GET", base+"/executions/"+x.ExecutionID+"/events?limit=2", nil)
	e.do("GET", base+"/executions?limit=1", nil)
	e.do("GET", base+"/executions/ex-nope", nil)
	e.run(id, map[string]any{"command": []string{"pwd"}, "cwd": "/missing"})
	long := e.exec(id, map[string]any{"command": []string{"sleep", "30"}})
	r, err := e.raw("DELETE", base+"/executions/"+long.ExecutionID, nil, h{"Authorization", "Bearer " + testKey})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status)
}

// drivePreviewRoutes drives the preview routes of machine id: create,
// get, list, delete.
func drivePreviewRoutes(t *testing.T, e *env, id string) {
	t.Helper()
	base := "/v1/machines/" + id
	p := previewOf(t, e, id)
	e.do("POST", base+"/previews", map[string]any{"port": 8080, "protocol": "https", "visibility": "org"})
	e.do("GET", base+"/previews/"+p.PreviewID, nil)
	e.do("GET", base+"/previews", nil)
	_, err := e.raw("DELETE", base+"/previews/"+p.PreviewID, nil, h{"Authorization", "Bearer " + testKey})
	require.NoError(t, err)
}

// driveKeyInFlightAndReuse sleeps the machine at base with an
// Idempotency-Key and drives the answers around it: 429 while the key is
// in flight, an injected 503, 409 when the key is reused on another route.
func driveKeyInFlightAndReuse(t *testing.T, e *env, base string) {
	t.Helper()
	require.NoError(t, e.s.SetFaults(Faults{Routes: map[string]FaultRule{"sleepMachine": {LatencyMS: 300}}}))
	key := e.newKey()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = e.raw("POST", base+"/sleep", nil, h{"Authorization", "Bearer " + testKey, "Idempotency-Key", key, "If-Match", "*"})
	}()
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, http.StatusTooManyRequests, e.do("POST", base+"/sleep", nil, "Idempotency-Key", key, "If-Match", "*").status)
	wg.Wait()
	require.NoError(t, e.s.SetFaults(Faults{Routes: map[string]FaultRule{"getMachine": {Error503: 1}}}))
	require.Equal(t, http.StatusServiceUnavailable, e.do("GET", base, nil).status)
	require.NoError(t, e.s.SetFaults(Faults{}))
	require.Equal(t, http.StatusConflict, e.do("POST", base+"/wake", nil, "Idempotency-Key", key, "If-Match", "*").status)
}

func authReq(t *testing.T, e *env, method, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testKey)
	return req
}
