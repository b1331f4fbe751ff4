package emulator

import (
	"context"
	"flag"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/dedalus"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *Config) { c.OrgID = "org-1" })

	r, err := e.raw("GET", "/v1/machines", nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, r.status)
	eb := r.errBody(t)
	assert.Equal(t, dedalus.ErrorBody{ErrorCode: dedalus.CodeAuthRequired, Message: "missing Dedalus API key"}, eb)

	r, err = e.raw("GET", "/v1/machines", nil, h{"Authorization", "Bearer nope"})
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, r.status)
	assert.Equal(t, dedalus.ErrorBody{ErrorCode: dedalus.CodeAuthInvalid, Message: "invalid Dedalus API key"}, r.errBody(t))

	r, err = e.raw("GET", "/v1/machines", nil, h{"x-api-key", "nope"})
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, r.status)
	assert.Equal(t, dedalus.CodeAuthInvalid, r.errBody(t).ErrorCode)

	r, err = e.raw("GET", "/v1/machines", nil, h{"x-api-key", testKey})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status)
	assert.JSONEq(t, `{"items":[]}`, string(r.body))

	r, err = e.raw("GET", "/v1/machines", nil, h{"Authorization", "Bearer " + testKey, "X-Dedalus-Org-Id", "org-1"})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status)

	r, err = e.raw("GET", "/v1/machines", nil, h{"Authorization", "Bearer " + testKey, "X-Dedalus-Org-Id", "org-2"})
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, r.status)
	eb = r.errBody(t)
	assert.Equal(t, dedalus.CodeAuthOrgMismatch, eb.ErrorCode)
	assert.False(t, eb.Retryable)

	// The control endpoints need no key.
	r, err = e.raw("GET", "/_local/stats", nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status)
}

func TestNotFoundAndMethodProblems(t *testing.T) {
	t.Parallel()
	e := start(t)
	r := e.do("GET", "/v1/machines/dm-123", nil)
	require.Equal(t, http.StatusNotFound, r.status)
	assert.Equal(t, "machine dm-123 not found", r.problem(t).Detail)

	for _, p := range []string{"/v1/machines/dm-123/executions/ex-1", "/v1/machines/dm-123/previews", "/v1/machines/dm-123/status/stream"} {
		r = e.do("GET", p, nil)
		require.Equal(t, http.StatusNotFound, r.status, p)
		assert.Equal(t, "machine dm-123 not found", r.problem(t).Detail)
	}
	m := e.create(nil)
	r = e.do("GET", "/v1/machines/"+m.MachineID+"/executions/ex-1", nil)
	require.Equal(t, http.StatusNotFound, r.status)
	assert.Equal(t, "execution ex-1 not found", r.problem(t).Detail)
	r = e.do("DELETE", "/v1/machines/"+m.MachineID+"/previews/pv-1", nil)
	require.Equal(t, http.StatusNotFound, r.status)
	assert.Equal(t, "preview pv-1 not found", r.problem(t).Detail)

	r = e.do("GET", "/v1/machines/"+m.MachineID+"/artifacts", nil)
	require.Equal(t, http.StatusNotFound, r.status)
	r.problem(t)
	r = e.do("GET", "/nope", nil)
	require.Equal(t, http.StatusNotFound, r.status)
	r.problem(t)

	r = e.do("PUT", "/v1/machines/"+m.MachineID, nil)
	require.Equal(t, http.StatusMethodNotAllowed, r.status)
	r.problem(t)
	assert.Equal(t, "GET, PATCH, DELETE", r.header.Get("Allow"))
}

func TestValidation(t *testing.T) {
	t.Parallel()
	e := start(t)
	check := func(method, path string, body any, loc string) {
		t.Helper()
		r := e.do(method, path, body)
		require.Equal(t, http.StatusBadRequest, r.status, "%s %s %v: %s", method, path, body, r.body)
		p := r.problem(t)
		require.NotEmpty(t, p.Errors, "body: %s", r.body)
		assert.Equal(t, loc, p.Errors[0].Location, "body: %s", r.body)
	}
	check("POST", "/v1/machines", `{"vcpu":1,"memory_mib":1,"storage_gib":1,"color":"red"}`, "body.color")
	check("POST", "/v1/machines", `{"memory_mib":1,"storage_gib":1}`, "body.vcpu")
	check("POST", "/v1/machines", `{"vcpu":0,"memory_mib":1,"storage_gib":1}`, "body.vcpu")
	check("POST", "/v1/machines", `{"vcpu":1,"storage_gib":1}`, "body.memory_mib")
	check("POST", "/v1/machines", `{"vcpu":1,"memory_mib":1,"storage_gib":-1}`, "body.storage_gib")
	check("POST", "/v1/machines", `{"vcpu":1,"memory_mib":"lots","storage_gib":1}`, "body.memory_mib")
	check("POST", "/v1/machines", `{"vcpu":1,"memory_mib":1,"storage_gib":1,"autosleep":"5x"}`, "body.autosleep")
	check("POST", "/v1/machines", ``, "body")
	check("POST", "/v1/machines", `{"vcpu":1`, "body")

	m := e.create(nil)
	base := "/v1/machines/" + m.MachineID
	check("PATCH", base, `{"autosleep":"soon"}`, "body.autosleep")
	check("PATCH", base, `{"vcpu":-2}`, "body.vcpu")
	check("POST", base+"/executions", `{"command":[]}`, "body.command")
	check("POST", base+"/executions", `{"cwd":"/"}`, "body.command")
	check("POST", base+"/executions", `{"command":["true"],"shell":true}`, "body.shell")
	check("POST", base+"/previews", `{"protocol":"http"}`, "body.port")
	check("POST", base+"/previews", `{"port":0}`, "body.port")
	check("POST", base+"/previews", `{"port":70000}`, "body.port")
	check("POST", base+"/previews", `{"port":80,"protocol":"ftp"}`, "body.protocol")
	check("POST", base+"/previews", `{"port":80,"visibility":"world"}`, "body.visibility")

	// Idempotency-Key is required on every mutation but the execution/preview deletes.
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/machines", `{"vcpu":1,"memory_mib":1,"storage_gib":1}`},
		{"PATCH", base, `{}`},
		{"DELETE", base, ``},
		{"POST", base + "/sleep", ``},
		{"POST", base + "/wake", ``},
		{"POST", base + "/executions", `{"command":["true"]}`},
		{"POST", base + "/previews", `{"port":80}`},
	} {
		r, err := e.raw(c.method, c.path, c.body, h{"Authorization", "Bearer " + testKey})
		require.NoError(t, err)
		require.Equal(t, http.StatusBadRequest, r.status, "%s %s", c.method, c.path)
		p := r.problem(t)
		assert.Equal(t, "header.Idempotency-Key", p.Errors[0].Location)
	}

	big := `{"command":["true"],"stdin":"` + strings.Repeat("x", MaxBodyBytes) + `"}`
	r := e.do("POST", base+"/executions", big)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.status)
	r.problem(t)

	r = e.do("GET", "/v1/machines?cursor=garbage", nil)
	require.Equal(t, http.StatusBadRequest, r.status)
	assert.Equal(t, "query.cursor", r.problem(t).Errors[0].Location)
	r = e.do("GET", "/v1/machines?limit=x", nil)
	require.Equal(t, http.StatusBadRequest, r.status)
	assert.Equal(t, "query.limit", r.problem(t).Errors[0].Location)

	// Nothing was created by the rejected requests.
	assert.Equal(t, int64(1), e.stats().Creates)
}

func TestLifecycleWalk(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *Config) { c.BootDelay = 60 * time.Millisecond })
	r := e.do("POST", "/v1/machines", map[string]any{"vcpu": 1.5, "memory_mib": 2048, "storage_gib": 20, "autosleep": "never"})
	require.Equal(t, http.StatusAccepted, r.status)
	assert.Equal(t, "1", r.header.Get("ETag"))
	assert.ElementsMatch(t, []string{"machine_id", "vcpu", "memory_mib", "storage_gib", "desired_state", "status", "autosleep_seconds"}, keys(t, r.body))
	var m dedalus.Machine
	r.json(t, &m)
	assert.True(t, strings.HasPrefix(m.MachineID, "dm-"))
	assert.Equal(t, dedalus.PhaseAccepted, m.Status.Phase)
	assert.Equal(t, dedalus.DesiredRunning, m.DesiredState)
	assert.Equal(t, "1", m.Status.Revision)
	assert.Equal(t, int64(0), m.AutosleepSeconds)
	assert.Equal(t, 1.5, m.VCPU)
	assert.NotEmpty(t, m.Status.Reason)
	id := m.MachineID
	base := "/v1/machines/" + id

	// accepted -> starting -> running, one revision each.
	m = e.waitPhase(id, dedalus.PhaseStarting)
	assert.Equal(t, "2", m.Status.Revision)
	m = e.waitPhase(id, dedalus.PhaseRunning)
	assert.Equal(t, "3", m.Status.Revision)
	assert.True(t, m.Status.LastTransitionAt.After(m.Status.LastTransitionAt.Add(-time.Hour)))
	_, gr := e.get(id)
	assert.Equal(t, "3", gr.header.Get("ETag"))
	assert.NotContains(t, keys(t, gr.body), "created_at")

	// list has created_at
	r = e.do("GET", "/v1/machines", nil)
	var page dedalus.Page[dedalus.MachineListItem]
	r.json(t, &page)
	require.Len(t, page.Items, 1)
	assert.False(t, page.Items[0].CreatedAt.IsZero())

	// wake on running: 200, no transition
	r = e.do("POST", base+"/wake", nil, "If-Match", "3")
	require.Equal(t, http.StatusOK, r.status)
	r.json(t, &m)
	assert.Equal(t, "3", m.Status.Revision)

	// patch bumps the revision
	r = e.do("PATCH", base, map[string]any{"vcpu": 4, "autosleep": "2m"}, "If-Match", `"3"`)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r.json(t, &m)
	assert.Equal(t, "4", m.Status.Revision)
	assert.Equal(t, "4", r.header.Get("ETag"))
	assert.Equal(t, float64(4), m.VCPU)
	assert.Equal(t, int64(120), m.AutosleepSeconds)
	assert.Equal(t, dedalus.PhaseRunning, m.Status.Phase)

	// sleep: 202 stopping -> sleeping
	r = e.do("POST", base+"/sleep", nil, "If-Match", "4")
	require.Equal(t, http.StatusAccepted, r.status)
	r.json(t, &m)
	assert.Equal(t, dedalus.PhaseStopping, m.Status.Phase)
	assert.Equal(t, dedalus.DesiredSleeping, m.DesiredState)
	assert.Equal(t, "5", m.Status.Revision)
	m = e.waitPhase(id, dedalus.PhaseSleeping)
	assert.Equal(t, "6", m.Status.Revision)

	// sleep on sleeping: 200 no-op
	r = e.do("POST", base+"/sleep", nil)
	require.Equal(t, http.StatusOK, r.status)
	r.json(t, &m)
	assert.Equal(t, "6", m.Status.Revision)

	// wake: 202 starting -> running; a second wake coalesces
	r = e.do("POST", base+"/wake", nil, "If-Match", "6")
	require.Equal(t, http.StatusAccepted, r.status)
	r.json(t, &m)
	assert.Equal(t, dedalus.PhaseStarting, m.Status.Phase)
	assert.Equal(t, dedalus.DesiredRunning, m.DesiredState)
	assert.Equal(t, "7", m.Status.Revision)
	m = e.waitPhase(id, dedalus.PhaseRunning)
	assert.Equal(t, "8", m.Status.Revision)

	// delete: 202 destroying -> destroyed, tombstone readable, out of the list
	r = e.do("DELETE", base, nil, "If-Match", "8")
	require.Equal(t, http.StatusAccepted, r.status)
	r.json(t, &m)
	assert.Equal(t, dedalus.PhaseDestroying, m.Status.Phase)
	assert.Equal(t, dedalus.DesiredDestroyed, m.DesiredState)
	m = e.waitPhase(id, dedalus.PhaseDestroyed)
	assert.Equal(t, "10", m.Status.Revision)
	r = e.do("GET", "/v1/machines", nil)
	assert.JSONEq(t, `{"items":[]}`, string(r.body))
	r = e.do("DELETE", base, nil, "If-Match", "1")
	require.Equal(t, http.StatusOK, r.status)
	r.json(t, &m)
	assert.Equal(t, dedalus.PhaseDestroyed, m.Status.Phase)

	// wake / sleep / patch on destroyed: 409 INVALID_STATE
	for _, c := range []struct{ method, path, body string }{{"POST", base + "/wake", ""}, {"POST", base + "/sleep", ""}, {"PATCH", base, "{}"}} {
		r = e.do(c.method, c.path, c.body)
		require.Equal(t, http.StatusConflict, r.status, c.path)
		eb := r.errBody(t)
		assert.Equal(t, dedalus.CodeInvalidState, eb.ErrorCode)
		assert.False(t, eb.Retryable)
		assert.Equal(t, "destroyed", eb.Details["current_observed_state"])
		assert.Equal(t, "destroyed", eb.Details["current_desired_state"])
		assert.NotEmpty(t, eb.Details["target_desired_state"])
	}
	r = e.do("POST", base+"/executions", map[string]any{"command": []string{"true"}})
	require.Equal(t, http.StatusConflict, r.status)
	assert.Equal(t, dedalus.CodeInvalidState, r.errBody(t).ErrorCode)

	st := e.stats()
	assert.Equal(t, int64(1), st.Creates)
	assert.Equal(t, int64(1), st.Sleeps)
	assert.Equal(t, int64(1), st.Wakes)
	assert.Equal(t, int64(2), st.WakeRequests)
	assert.Equal(t, int64(1), st.Deletes)
	assert.Equal(t, 0, st.LiveMachines)
	assert.Equal(t, 1, st.MachinesTotal)
}

func TestInvalidStateWhileBooting(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *Config) { c.BootDelay = time.Second })
	m := e.create(nil)
	r := e.do("POST", "/v1/machines/"+m.MachineID+"/sleep", nil)
	require.Equal(t, http.StatusConflict, r.status)
	eb := r.errBody(t)
	assert.Equal(t, dedalus.CodeInvalidState, eb.ErrorCode)
	assert.Equal(t, "requested lifecycle transition is invalid for current machine state", eb.Message)
	assert.Equal(t, map[string]string{
		"current_desired_state": "running", "current_observed_state": "accepted",
		"target_desired_state": "sleeping", "expected_observed_state": "running",
	}, eb.Details)
	// wake while booting coalesces: 202, no transition
	r = e.do("POST", "/v1/machines/"+m.MachineID+"/wake", nil)
	require.Equal(t, http.StatusAccepted, r.status)
	var got dedalus.Machine
	r.json(t, &got)
	assert.Equal(t, "1", got.Status.Revision)
}

func TestRevisionMismatch(t *testing.T) {
	t.Parallel()
	e := start(t)
	m := e.running(nil)
	base := "/v1/machines/" + m.MachineID
	key := e.newKey()
	r := e.do("POST", base+"/sleep", nil, "If-Match", "2", "Idempotency-Key", key)
	require.Equal(t, http.StatusConflict, r.status)
	eb := r.errBody(t)
	assert.Equal(t, dedalus.ErrorBody{
		ErrorCode: dedalus.CodeRevisionMismatch, Message: "revision mismatch", Retryable: true,
		Details: map[string]string{"expected_revision": "3", "provided_revision": "2"},
	}, eb)
	for _, c := range []struct{ method, path, body string }{{"PATCH", base, `{"vcpu":1}`}, {"DELETE", base, ""}, {"POST", base + "/wake", ""}} {
		r = e.do(c.method, c.path, c.body, "If-Match", `"1"`)
		require.Equal(t, http.StatusConflict, r.status, c.path)
		assert.Equal(t, dedalus.CodeRevisionMismatch, r.errBody(t).ErrorCode)
	}
	// The failed attempt was not recorded: the same key with the right revision works.
	r = e.do("POST", base+"/sleep", nil, "If-Match", `"3"`, "Idempotency-Key", key)
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	e.waitPhase(m.MachineID, dedalus.PhaseSleeping)
	// "*" and a missing If-Match are accepted.
	r = e.do("POST", base+"/wake", nil, "If-Match", "*")
	require.Equal(t, http.StatusAccepted, r.status)
	e.waitPhase(m.MachineID, dedalus.PhaseRunning)
	r = e.do("POST", base+"/sleep", nil)
	require.Equal(t, http.StatusAccepted, r.status)
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	e := start(t)
	body := map[string]any{"vcpu": 1, "memory_mib": 512, "storage_gib": 5}
	key := e.newKey()
	r1 := e.do("POST", "/v1/machines", body, "Idempotency-Key", key)
	require.Equal(t, http.StatusAccepted, r1.status)
	e.waitPhase(string(mustID(t, r1)), dedalus.PhaseRunning)
	// Same key, same body (different key order and spacing): the first answer again.
	r2 := e.do("POST", "/v1/machines", `{ "storage_gib":5, "memory_mib":512, "vcpu":1 }`, "Idempotency-Key", key)
	require.Equal(t, http.StatusAccepted, r2.status)
	assert.Equal(t, string(r1.body), string(r2.body))
	assert.Equal(t, r1.header.Get("ETag"), r2.header.Get("ETag"))
	st := e.stats()
	assert.Equal(t, int64(1), st.Creates)
	assert.Equal(t, int64(1), st.IdempotentReplays)
	assert.Equal(t, 1, st.LiveMachines)

	// Same key, different body: 409.
	r3 := e.do("POST", "/v1/machines", map[string]any{"vcpu": 2, "memory_mib": 512, "storage_gib": 5}, "Idempotency-Key", key)
	require.Equal(t, http.StatusConflict, r3.status)
	eb := r3.errBody(t)
	assert.Equal(t, dedalus.CodeIdempotencyKeyReused, eb.ErrorCode)
	assert.False(t, eb.Retryable)
	assert.NotEmpty(t, eb.Details["expected_request_hash"])
	assert.NotEmpty(t, eb.Details["provided_request_hash"])
	assert.NotEqual(t, eb.Details["expected_request_hash"], eb.Details["provided_request_hash"])

	// Same key on another path is another request: 409 too.
	id := string(mustID(t, r1))
	r4 := e.do("POST", "/v1/machines/"+id+"/sleep", nil, "Idempotency-Key", key)
	require.Equal(t, http.StatusConflict, r4.status)

	// Replays of a wake are not counted as wake requests.
	wk := e.newKey()
	require.Equal(t, http.StatusOK, e.do("POST", "/v1/machines/"+id+"/wake", nil, "Idempotency-Key", wk).status)
	require.Equal(t, http.StatusOK, e.do("POST", "/v1/machines/"+id+"/wake", nil, "Idempotency-Key", wk).status)
	st = e.stats()
	assert.Equal(t, int64(1), st.WakeRequests)
	assert.Equal(t, int64(2), st.IdempotentReplays)
}

func mustID(t *testing.T, r *resp) string {
	t.Helper()
	var m dedalus.Machine
	r.json(t, &m)
	require.NotEmpty(t, m.MachineID)
	return m.MachineID
}

func TestIdempotencyInFlight(t *testing.T) {
	t.Parallel()
	e := start(t)
	require.NoError(t, e.s.SetFaults(Faults{Routes: map[string]FaultRule{"createMachine": {LatencyMS: 400}}}))
	key := e.newKey()
	body := map[string]any{"vcpu": 1, "memory_mib": 512, "storage_gib": 5}
	var first *resp
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r, err := e.raw("POST", "/v1/machines", body, h{"Authorization", "Bearer " + testKey, "Idempotency-Key", key})
		if err == nil {
			first = r
		}
	}()
	time.Sleep(150 * time.Millisecond)
	r := e.do("POST", "/v1/machines", body, "Idempotency-Key", key)
	require.Equal(t, http.StatusTooManyRequests, r.status)
	assert.Equal(t, dedalus.ErrorBody{ErrorCode: dedalus.CodeRateLimited, Message: "idempotency key is already in-flight", Retryable: true, RetryAfterMS: 250}, r.errBody(t))
	wg.Wait()
	require.NotNil(t, first)
	require.Equal(t, http.StatusAccepted, first.status)
	require.NoError(t, e.s.SetFaults(Faults{}))
	r = e.do("POST", "/v1/machines", body, "Idempotency-Key", key)
	require.Equal(t, http.StatusAccepted, r.status)
	assert.Equal(t, string(first.body), string(r.body))
	assert.Equal(t, int64(1), e.stats().Creates)
}

func TestPaging(t *testing.T) {
	t.Parallel()
	e := start(t)
	var ids []string
	for range 5 {
		ids = append(ids, e.create(nil).MachineID)
	}
	var got []string
	cursor := ""
	pages := 0
	for {
		path := "/v1/machines?limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := e.do("GET", path, nil)
		require.Equal(t, http.StatusOK, r.status)
		var p dedalus.Page[dedalus.MachineListItem]
		r.json(t, &p)
		pages++
		for _, it := range p.Items {
			got = append(got, it.MachineID)
		}
		if p.NextCursor == "" {
			assert.NotContains(t, string(r.body), "next_cursor")
			break
		}
		require.LessOrEqual(t, pages, 3)
		cursor = p.NextCursor
	}
	assert.Equal(t, 3, pages)
	assert.Equal(t, ids, got)

	r := e.do("GET", "/v1/machines?limit=5", nil)
	var p dedalus.Page[dedalus.MachineListItem]
	r.json(t, &p)
	assert.Len(t, p.Items, 5)
	assert.Empty(t, p.NextCursor)
}

func TestStatusStream(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *Config) { c.BootDelay = 100 * time.Millisecond })
	m := e.create(nil)
	evs, comments := readStream(t, e, m.MachineID, "")
	require.Len(t, evs, 3, "events: %+v", evs)
	for i, want := range []dedalus.MachinePhase{dedalus.PhaseAccepted, dedalus.PhaseStarting, dedalus.PhaseRunning} {
		assert.Equal(t, want, evs[i].m.Status.Phase)
		assert.Equal(t, evs[i].m.Status.Revision, evs[i].id)
		assert.Equal(t, "status", evs[i].event)
	}
	assert.Equal(t, 0, comments)

	// Converged: one event, then the stream closes.
	evs, _ = readStream(t, e, m.MachineID, "")
	require.Len(t, evs, 1)
	assert.Equal(t, "3", evs[0].id)

	// Resuming at the current revision of a converged machine: no event, closed.
	evs, _ = readStream(t, e, m.MachineID, "3")
	assert.Len(t, evs, 0)

	// Resuming mid-way replays the missed transitions.
	evs, _ = readStream(t, e, m.MachineID, "1")
	require.Len(t, evs, 2)
	assert.Equal(t, "2", evs[0].id)

	// A sleep in progress: stopping then sleeping.
	r := e.do("POST", "/v1/machines/"+m.MachineID+"/sleep", nil)
	require.Equal(t, http.StatusAccepted, r.status)
	evs, _ = readStream(t, e, m.MachineID, "")
	require.NotEmpty(t, evs)
	assert.Equal(t, dedalus.PhaseSleeping, evs[len(evs)-1].m.Status.Phase)
}

type sse struct {
	id, event string
	m         dedalus.Machine
}

func readStream(t *testing.T, e *env, id, lastEventID string) ([]sse, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", e.url+"/v1/machines/"+id+"/status/stream", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testKey)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	b, err := readAll(res)
	require.NoError(t, err, "the stream must close by itself")
	var out []sse
	comments := 0
	for _, block := range strings.Split(string(b), "\n\n") {
		if strings.TrimSpace(block) == "" {
			continue
		}
		var ev sse
		for _, line := range strings.Split(block, "\n") {
			switch {
			case strings.HasPrefix(line, ":"):
				comments++
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				ev.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				(&resp{body: []byte(strings.TrimPrefix(line, "data: "))}).json(t, &ev.m)
			}
		}
		if ev.id != "" {
			out = append(out, ev)
		}
	}
	return out, comments
}

func readAll(res *http.Response) ([]byte, error) {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := res.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			if err.Error() == "EOF" {
				return []byte(b.String()), nil
			}
			return []byte(b.String()), err
		}
	}
}

func TestStatusStreamKeepalive(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *Config) { c.BootDelay = 250 * time.Millisecond; c.keepalive = 30 * time.Millisecond })
	m := e.create(nil)
	evs, comments := readStream(t, e, m.MachineID, "")
	assert.Len(t, evs, 3)
	assert.GreaterOrEqual(t, comments, 2)
}

func TestControlEndpoints(t *testing.T) {
	t.Parallel()
	e := start(t)
	r, err := e.raw("PUT", "/_local/faults", `{"routes":{"getMachine":{"error_503":0.25,"latency_ms":5},"*":{"reset":0.01}},"wake_delay":"50ms","boot_delay":30}`, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var f Faults
	r.json(t, &f)
	assert.Equal(t, FaultRule{Error503: 0.25, LatencyMS: 5}, f.Routes["getMachine"])
	assert.Equal(t, Duration(50*time.Millisecond), *f.WakeDelay)
	assert.Equal(t, Duration(30*time.Millisecond), *f.BootDelay)
	assert.Equal(t, Duration(10*time.Millisecond), *f.SleepDelay)

	r, err = e.raw("GET", "/_local/faults", nil, nil)
	require.NoError(t, err)
	assert.JSONEq(t, `{"routes":{"getMachine":{"error_503":0.25,"latency_ms":5},"*":{"reset":0.01}},"boot_delay":"30ms","wake_delay":"50ms","sleep_delay":"10ms"}`, string(r.body))

	r, err = e.raw("PUT", "/_local/faults", `{"routes":{"makeCoffee":{"error_503":1}}}`, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, r.status)
	r, err = e.raw("PUT", "/_local/faults", `{"routes":{"*":{"error_503":2}}}`, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, r.status)

	e.create(nil)
	r, err = e.raw("POST", "/_local/stats/reset", nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status)
	st := e.stats()
	assert.Equal(t, int64(0), st.Creates)
	assert.Equal(t, 1, st.LiveMachines)
	assert.Equal(t, 1, st.MachinesTotal)
}

func TestConfig(t *testing.T) {
	_, err := New(Config{Addr: "0.0.0.0:8788", Logger: quiet})
	require.ErrorContains(t, err, "non-loopback")
	_, err = New(Config{Addr: "192.168.1.1:8788", Logger: quiet})
	require.Error(t, err)

	t.Setenv("DEDALUS_EMULATOR_BOOT_DELAY", "0s")
	t.Setenv("DEDALUS_EMULATOR_API_KEY", "k")
	t.Setenv("DEDALUS_EMULATOR_FAULTS", `{"routes":{"wakeMachine":{"error_429":0.5,"retry_after_ms":7}}}`)
	cfg, err := LoadConfig()
	require.NoError(t, err)
	assert.Equal(t, "k", cfg.APIKey)
	assert.Equal(t, DefaultAddr, cfg.Addr)
	assert.Equal(t, 300*time.Millisecond, cfg.WakeDelay)
	assert.Equal(t, int64(DefaultOutputCap), cfg.OutputCap)
	assert.Equal(t, FaultRule{Error429: 0.5, RetryAfterMS: 7}, cfg.Faults.Routes["wakeMachine"])
	assert.Equal(t, time.Duration(0), cfg.withDefaults().BootDelay, "an explicit 0 means no delay")

	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.BindFlags(fs)
	require.NoError(t, fs.Parse([]string{"--addr", "127.0.0.1:0", "--wake-delay", "0", "--output-cap", "10", "--faults", `{"routes":{"*":{"reset":0.5}}}`}))
	assert.Equal(t, "127.0.0.1:0", cfg.Addr)
	assert.Equal(t, time.Duration(0), cfg.withDefaults().WakeDelay)
	assert.Equal(t, int64(10), cfg.OutputCap)
	assert.Equal(t, 0.5, cfg.Faults.Routes["*"].Reset)
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		names = append(names, f.Name)
		assert.Contains(t, f.Usage, "env DEDALUS_EMULATOR_")
	})
	sort.Strings(names)
	assert.Equal(t, []string{"addr", "api-key", "boot-delay", "data-dir", "default-autosleep", "faults", "idempotency-ttl",
		"org-id", "output-cap", "seed", "sleep-delay", "tombstone-ttl", "wake-delay"}, names)
}
