package emulator

import (
	"net/http"
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

	checkIdempotencyKeyRequired(t, e, base)

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

// checkIdempotencyKeyRequired checks that every mutation but the
// execution/preview deletes needs an Idempotency-Key; base is a machine's
// path.
func checkIdempotencyKeyRequired(t *testing.T, e *env, base string) {
	t.Helper()
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
}

func TestLifecycleWalk(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *Config) { c.BootDelay = 60 * time.Millisecond })
	id := walkCreate(t, e)
	base := "/v1/machines/" + id
	walkRunningUpdates(t, e, base)

	// sleep: 202 stopping -> sleeping
	lifecycleStep{"POST", base + "/sleep", "4", dedalus.PhaseStopping, dedalus.DesiredSleeping, "5", dedalus.PhaseSleeping, "6"}.walk(t, e, id)

	// sleep on sleeping: 200 no-op
	r := e.do("POST", base+"/sleep", nil)
	require.Equal(t, http.StatusOK, r.status)
	var m dedalus.Machine
	r.json(t, &m)
	assert.Equal(t, "6", m.Status.Revision)

	// wake: 202 starting -> running
	lifecycleStep{"POST", base + "/wake", "6", dedalus.PhaseStarting, dedalus.DesiredRunning, "7", dedalus.PhaseRunning, "8"}.walk(t, e, id)

	// delete: 202 destroying -> destroyed, tombstone readable, out of the list
	lifecycleStep{"DELETE", base, "8", dedalus.PhaseDestroying, dedalus.DesiredDestroyed, "", dedalus.PhaseDestroyed, "10"}.walk(t, e, id)
	r = e.do("GET", "/v1/machines", nil)
	assert.JSONEq(t, `{"items":[]}`, string(r.body))
	r = e.do("DELETE", base, nil, "If-Match", "1")
	require.Equal(t, http.StatusOK, r.status)
	r.json(t, &m)
	assert.Equal(t, dedalus.PhaseDestroyed, m.Status.Phase)

	checkDestroyedRefuses(t, e, base)

	st := e.stats()
	assert.Equal(t, int64(1), st.Creates)
	assert.Equal(t, int64(1), st.Sleeps)
	assert.Equal(t, int64(1), st.Wakes)
	assert.Equal(t, int64(2), st.WakeRequests)
	assert.Equal(t, int64(1), st.Deletes)
	assert.Equal(t, 0, st.LiveMachines)
	assert.Equal(t, 1, st.MachinesTotal)
}

// walkCreate creates the walk's machine and follows it to running, one
// revision a transition; it returns the machine's ID.
func walkCreate(t *testing.T, e *env) string {
	t.Helper()
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
	return id
}

// walkRunningUpdates wakes the running machine at base (a no-op) and
// patches it (a new revision, 4).
func walkRunningUpdates(t *testing.T, e *env, base string) {
	t.Helper()
	// wake on running: 200, no transition
	r := e.do("POST", base+"/wake", nil, "If-Match", "3")
	require.Equal(t, http.StatusOK, r.status)
	var m dedalus.Machine
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
}

// lifecycleStep is a lifecycle request (If-Match ifMatch) answered 202:
// the machine answered is in phase now (at revision rev, when given) on
// its way to desired, and then reaches phase then, at revision thenRev.
type lifecycleStep struct {
	method, path, ifMatch string
	now                   dedalus.MachinePhase
	desired               dedalus.DesiredState
	rev                   string
	then                  dedalus.MachinePhase
	thenRev               string
}

func (s lifecycleStep) walk(t *testing.T, e *env, id string) {
	t.Helper()
	r := e.do(s.method, s.path, nil, "If-Match", s.ifMatch)
	require.Equal(t, http.StatusAccepted, r.status)
	var m dedalus.Machine
	r.json(t, &m)
	assert.Equal(t, s.now, m.Status.Phase)
	assert.Equal(t, s.desired, m.DesiredState)
	if s.rev != "" {
		assert.Equal(t, s.rev, m.Status.Revision)
	}
	m = e.waitPhase(id, s.then)
	assert.Equal(t, s.thenRev, m.Status.Revision)
}

// checkDestroyedRefuses checks that the destroyed machine at base refuses
// wake, sleep, patch and executions: 409 INVALID_STATE.
func checkDestroyedRefuses(t *testing.T, e *env, base string) {
	t.Helper()
	for _, c := range []struct{ method, path, body string }{{"POST", base + "/wake", ""}, {"POST", base + "/sleep", ""}, {"PATCH", base, "{}"}} {
		r := e.do(c.method, c.path, c.body)
		require.Equal(t, http.StatusConflict, r.status, c.path)
		eb := r.errBody(t)
		assert.Equal(t, dedalus.CodeInvalidState, eb.ErrorCode)
		assert.False(t, eb.Retryable)
		assert.Equal(t, "destroyed", eb.Details["current_observed_state"])
		assert.Equal(t, "destroyed", eb.Details["current_desired_state"])
		assert.NotEmpty(t, eb.Details["target_desired_state"])
	}
	r := e.do("POST", base+"/executions", map[string]any{"command": []string{"true"}})
	require.Equal(t, http.StatusConflict, r.status)
	assert.Equal(t, dedalus.CodeInvalidState, r.errBody(t).ErrorCode)
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
	items, pages := pageAll[dedalus.MachineListItem](t, e, "/v1/machines?limit=2", 4)
	var got []string
	for _, it := range items {
		got = append(got, it.MachineID)
	}
	assert.Equal(t, 3, pages)
	assert.Equal(t, ids, got)

	r := e.do("GET", "/v1/machines?limit=5", nil)
	var p dedalus.Page[dedalus.MachineListItem]
	r.json(t, &p)
	assert.Len(t, p.Items, 5)
	assert.Empty(t, p.NextCursor)
}
