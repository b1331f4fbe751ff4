package githubtest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
)

type jitAnswer struct {
	Runner struct {
		ID        int64  `json:"id"`
		Name      string `json:"name"`
		OS        string `json:"os"`
		Status    string `json:"status"`
		Busy      bool   `json:"busy"`
		Ephemeral bool   `json:"ephemeral"`
		Labels    []struct {
			ID   int64  `json:"id"`
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"labels"`
	} `json:"runner"`
	EncodedJITConfig string `json:"encoded_jit_config"`
}

func generate(t *testing.T, srv *githubtest.Server, path, name string, labels ...string) jitAnswer {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"name": name, "runner_group_id": 1, "labels": labels, "work_folder": "_work"})
	var a jitAnswer
	resp := do(t, "POST", srv.URL()+path+"/actions/runners/generate-jitconfig", "token "+tok, string(b), &a)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	return a
}

type claimAnswer struct {
	Job struct {
		ID         int64    `json:"id"`
		RunID      int64    `json:"run_id"`
		Status     string   `json:"status"`
		Conclusion *string  `json:"conclusion"`
		RunnerName *string  `json:"runner_name"`
		Labels     []string `json:"labels"`
		Name       string   `json:"name"`
	} `json:"job"`
	DurationMS int64  `json:"duration_ms"`
	Conclusion string `json:"conclusion"`
}

// claimJob connects a runner; a runner handed a job cannot claim again.
func claimJob(t *testing.T, srv *githubtest.Server, config string) int {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"jit_config": config})
	code := do(t, "POST", srv.URL()+"_test/runners/claim", "", string(b), nil).StatusCode
	if code == http.StatusOK {
		again := do(t, "POST", srv.URL()+"_test/runners/claim", "", string(b), nil)
		require.Equal(t, http.StatusConflict, again.StatusCode, "a JIT config is handed one job")
	}
	return code
}

func TestGitHubDoubleJITRunnerClaimsOldestMatchingJob(t *testing.T) {
	srv := newServer(t)
	scope := pools.Scope{Kind: pools.ScopeRepo, Repo: "octo/hello"}
	var (
		mu     sync.Mutex
		events []string
	)
	srv.OnJobEvent(func(action string, j githubtest.Job) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, fmt.Sprintf("%s:%d:%s", action, j.ID, j.RunnerName))
	})

	other := queueOneOtherAndTwoPoolJobs(t, srv)
	a := generateFirstRunner(t, srv, scope)
	b := claimOldestMatchingJob(t, srv, scope, a)
	completeRetiresTheJITRunner(t, srv, scope, b)
	secondRunnerTakesTheNextJob(t, srv, scope)

	// Cancelling a queued job completes it.
	srv.CancelJob(other.ID)
	j, _ := srv.Job(other.ID)
	assert.Equal(t, []string{"completed", "cancelled"}, []string{j.Status, j.Conclusion})
	assert.Len(t, srv.Jobs(), 3)

	resp := do(t, "POST", srv.URL()+"_test/runners/claim", "", `{"jit_config":"bm90IGEgY29uZmln"}`, nil)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{
		"queued:10:", "queued:11:", "queued:12:",
		"in_progress:11:drydock-ci-12-1", "completed:11:drydock-ci-12-1",
		"in_progress:12:drydock-ci-13-1", "completed:10:",
	}, events)
}

// queueOneOtherAndTwoPoolJobs queues job 10 for other labels, then jobs
// 11 (lint, 1.5s, planned failure) and 12 for the pool; it returns job 10.
func queueOneOtherAndTwoPoolJobs(t *testing.T, srv *githubtest.Server) githubtest.Job {
	t.Helper()
	// A job for other labels, then two for the pool: the runner woken for
	// the newest one is handed the oldest that matches.
	other := srv.AddJob("octo", "hello", githubtest.Job{ID: 10, Labels: []string{"self-hosted", "gpu"}})
	first := srv.AddJob("octo", "hello", githubtest.Job{ID: 11, Name: "lint", Labels: []string{"self-hosted", "Drydock"}, Duration: 1500 * time.Millisecond, Conclusion: "failure"})
	srv.AddJob("octo", "hello", githubtest.Job{ID: 12, Labels: []string{"drydock"}})
	assert.Equal(t, githubtest.JobQueued, first.Status)
	assert.NotZero(t, first.RunID)
	return other
}

// generateFirstRunner generates runner drydock-ci-12-1's JIT config and
// checks the runner and the config; its name cannot be taken again.
func generateFirstRunner(t *testing.T, srv *githubtest.Server, scope pools.Scope) jitAnswer {
	t.Helper()
	a := generate(t, srv, "repos/octo/hello", "drydock-ci-12-1", "self-hosted", "linux", "drydock")
	assert.Equal(t, "offline", a.Runner.Status)
	assert.Equal(t, "unknown", a.Runner.OS)
	assert.True(t, a.Runner.Ephemeral)
	require.Len(t, a.Runner.Labels, 3)
	assert.Equal(t, "custom", a.Runner.Labels[0].Type)

	cfg, err := githubtest.DecodeJITConfig(a.EncodedJITConfig)
	require.NoError(t, err)
	assert.Equal(t, a.Runner.ID, cfg.RunnerID)
	assert.Equal(t, scope, cfg.Scope)
	assert.Equal(t, srv.URL(), cfg.URL+"/")

	// The same name again: 409.
	b, _ := json.Marshal(map[string]any{"name": "drydock-ci-12-1", "runner_group_id": 1, "labels": []string{"x"}})
	var e map[string]any
	resp := do(t, "POST", srv.URL()+"repos/octo/hello/actions/runners/generate-jitconfig", "token "+tok, string(b), &e)
	assert.Equal(t, http.StatusConflict, resp.StatusCode)
	assert.Contains(t, e["message"], "already exists")
	return a
}

// claimOldestMatchingJob claims with runner a's config: it is handed job
// 11, the config is spent, and the busy runner cannot be removed. It
// returns the claim's body.
func claimOldestMatchingJob(t *testing.T, srv *githubtest.Server, scope pools.Scope, a jitAnswer) []byte {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"jit_config": a.EncodedJITConfig})
	var got claimAnswer
	resp := do(t, "POST", srv.URL()+"_test/runners/claim", "", string(b), &got)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.EqualValues(t, 11, got.Job.ID)
	assert.Equal(t, "lint", got.Job.Name)
	assert.Equal(t, "in_progress", got.Job.Status)
	assert.Nil(t, got.Job.Conclusion)
	require.NotNil(t, got.Job.RunnerName)
	assert.Equal(t, "drydock-ci-12-1", *got.Job.RunnerName)
	assert.EqualValues(t, 1500, got.DurationMS)
	assert.Equal(t, "failure", got.Conclusion, "what the stand-in runner should report")

	// Claimed once: the config is spent.
	resp = do(t, "POST", srv.URL()+"_test/runners/claim", "", string(b), nil)
	assert.Equal(t, http.StatusConflict, resp.StatusCode)

	rs := srv.Runners(scope)
	require.Len(t, rs, 1)
	assert.Equal(t, "online", rs[0].Status)
	assert.True(t, rs[0].Busy)
	assert.EqualValues(t, 11, rs[0].JobID)
	j, ok := srv.Job(11)
	require.True(t, ok)
	assert.Equal(t, githubtest.JobInProgress, j.Status)
	assert.Equal(t, "drydock-ci-12-1", j.RunnerName)
	assert.Empty(t, j.Conclusion)
	j, _ = srv.Job(12)
	assert.Equal(t, githubtest.JobQueued, j.Status, "the job that woke the runner waits for the next one")

	// The busy runner cannot be removed.
	var e map[string]any
	resp = do(t, "DELETE", fmt.Sprintf("%srepos/octo/hello/actions/runners/%d", srv.URL(), a.Runner.ID), "token "+tok, "", &e)
	assert.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
	assert.Contains(t, e["message"], "still running a job")
	return b
}

// completeRetiresTheJITRunner completes job 11 (claim body b): the job is
// done with its planned conclusion, the runner gone, and the REST view
// agrees.
func completeRetiresTheJITRunner(t *testing.T, srv *githubtest.Server, scope pools.Scope, b []byte) {
	t.Helper()
	// Complete: the job is done and the single-use runner gone.
	resp := do(t, "POST", srv.URL()+"_test/jobs/11/complete", "", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	j, _ := srv.Job(11)
	assert.Equal(t, githubtest.JobCompleted, j.Status)
	assert.Equal(t, "failure", j.Conclusion, "the planned conclusion when the body names none")
	assert.False(t, j.CompletedAt.IsZero())
	assert.Empty(t, srv.Runners(scope))
	resp = do(t, "POST", srv.URL()+"_test/jobs/11/complete", "", `{"conclusion":"success"}`, nil)
	assert.Equal(t, http.StatusConflict, resp.StatusCode, "completed already")
	resp = do(t, "POST", srv.URL()+"_test/jobs/999/complete", "", `{"conclusion":"success"}`, nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp = do(t, "POST", srv.URL()+"_test/runners/claim", "", string(b), nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "a deleted runner's config is refused")

	// The job REST view agrees.
	var rest struct {
		Status     string  `json:"status"`
		Conclusion *string `json:"conclusion"`
		RunnerName *string `json:"runner_name"`
	}
	resp = do(t, "GET", srv.URL()+"repos/octo/hello/actions/jobs/11", "token "+tok, "", &rest)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotNil(t, rest.Conclusion)
	assert.Equal(t, "completed", rest.Status)
	assert.Equal(t, "failure", *rest.Conclusion)
	assert.Equal(t, "drydock-ci-12-1", *rest.RunnerName)
}

// secondRunnerTakesTheNextJob: a second runner takes job 12; a third finds
// nothing and polls (204), and once removed is told it is gone.
func secondRunnerTakesTheNextJob(t *testing.T, srv *githubtest.Server, scope pools.Scope) {
	t.Helper()
	a2 := generate(t, srv, "repos/octo/hello", "drydock-ci-13-1", "drydock")
	code := claimJob(t, srv, a2.EncodedJITConfig)
	assert.Equal(t, http.StatusOK, code)
	a3 := generate(t, srv, "repos/octo/hello", "drydock-ci-14-1", "drydock", "self-hosted")
	b3, _ := json.Marshal(map[string]string{"jit_config": a3.EncodedJITConfig})
	resp := do(t, "POST", srv.URL()+"_test/runners/claim", "", string(b3), nil)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	resp = do(t, "POST", srv.URL()+"_test/runners/claim", "", string(b3), nil)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode, "polling again is fine")
	idle := srv.Runners(scope)[1]
	assert.Equal(t, "online", idle.Status)
	assert.False(t, idle.Busy)
	// An idle runner can be removed; its next poll is told it is gone.
	resp = do(t, "DELETE", fmt.Sprintf("%srepos/octo/hello/actions/runners/%d", srv.URL(), idle.ID), "token "+tok, "", nil)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	resp = do(t, "POST", srv.URL()+"_test/runners/claim", "", string(b3), nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestGitHubDoubleOrgRunnersTakeJobsOfTheirOrganizationOnly(t *testing.T) {
	srv := newServer(t)
	srv.AddOrg("acme")
	srv.AddRepo("acme", "api")
	srv.AddJob("octo", "hello", githubtest.Job{ID: 1, Labels: []string{"drydock"}}) // another owner
	srv.AddJob("acme", "api", githubtest.Job{ID: 2, Labels: []string{"drydock"}})
	a := generate(t, srv, "orgs/acme", "drydock-org-1", "drydock")
	code := claimJob(t, srv, a.EncodedJITConfig)
	require.Equal(t, http.StatusOK, code)
	j, _ := srv.Job(2)
	assert.Equal(t, "drydock-org-1", j.RunnerName)
	j, _ = srv.Job(1)
	assert.Equal(t, githubtest.JobQueued, j.Status)

	var list struct {
		TotalCount int `json:"total_count"`
		Runners    []struct {
			Name string `json:"name"`
			Busy bool   `json:"busy"`
		} `json:"runners"`
	}
	resp := do(t, "GET", srv.URL()+"orgs/acme/actions/runners?name=DRYDOCK-ORG-1", "token "+tok, "", &list)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, 1, list.TotalCount)
	assert.True(t, list.Runners[0].Busy)
	resp = do(t, "GET", srv.URL()+"orgs/nobody/actions/runners", "token "+tok, "", nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp = do(t, "GET", srv.URL()+"orgs/acme/actions/runners", "", "", nil)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	var tokAns struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	resp = do(t, "POST", srv.EnterpriseURL()+"orgs/acme/actions/runners/registration-token", "token "+tok, "", &tokAns)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	assert.Equal(t, []string{tokAns.Token}, srv.RegistrationTokens())
	assert.WithinDuration(t, time.Now().Add(time.Hour), tokAns.ExpiresAt, 5*time.Second)
}

// A persistent runner registers with a registration token (config.sh) and
// takes job after job; a held job waits; the machine a runner reports is
// kept; a cancelled job frees the persistent runner.
func TestGitHubDoublePersistentRunnerTakesJobAfterJob(t *testing.T) {
	srv := newServer(t)
	srv.AddOrg("acme")
	srv.AddRepo("acme", "shop")
	labels := []string{"self-hosted", "linux"}
	j1 := srv.AddJob("acme", "shop", githubtest.Job{Labels: labels})
	held := srv.AddJob("acme", "shop", githubtest.Job{Labels: labels})
	srv.SetHeld(held.ID, true)
	j3 := srv.AddJob("acme", "shop", githubtest.Job{Labels: labels})

	var tokAns struct{ Token string }
	require.Equal(t, http.StatusCreated, do(t, "POST", srv.URL()+"orgs/acme/actions/runners/registration-token", "token "+tok, "", &tokAns).StatusCode)
	register := func(token, name string) (int, string) { return registerRunner(t, srv, token, name, labels) }
	code, _ := register("forged", "r1")
	assert.Equal(t, http.StatusUnauthorized, code)
	code, cfg := register(tokAns.Token, "drydock-p-dm-1")
	require.Equal(t, http.StatusCreated, code)

	claim := func() (int, claimAnswer) { return claimOnMachine(t, srv, cfg, "dm-1") }
	code, got := claim()
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, j1.ID, got.Job.ID)
	code, _ = claim()
	assert.Equal(t, http.StatusConflict, code, "a busy runner claims nothing")
	rs := srv.Runners(pools.Scope{Kind: pools.ScopeOrg, Org: "acme"})
	require.Len(t, rs, 1)
	assert.False(t, rs[0].Ephemeral)
	assert.True(t, rs[0].Busy)
	assert.Equal(t, "dm-1", rs[0].MachineID)
	assert.Equal(t, j1.ID, rs[0].JobID)

	require.Equal(t, http.StatusOK, do(t, "POST", fmt.Sprintf("%s_test/jobs/%d/complete", srv.URL(), j1.ID), "", "", nil).StatusCode)
	code, got = claim()
	require.Equal(t, http.StatusOK, code, "a persistent runner stays registered and takes the next job")
	assert.Equal(t, j3.ID, got.Job.ID, "the held job is skipped")
	srv.CancelJob(j3.ID)
	rs = srv.Runners(pools.Scope{Kind: pools.ScopeOrg, Org: "acme"})
	require.Len(t, rs, 1)
	assert.False(t, rs[0].Busy, "a cancelled job frees its persistent runner")

	code, _ = claim()
	assert.Equal(t, http.StatusNoContent, code, "only the held job is left")
	srv.SetHeld(held.ID, false)
	code, got = claim()
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, held.ID, got.Job.ID)
	code, _ = register(tokAns.Token, "drydock-p-dm-1")
	assert.Equal(t, http.StatusConflict, code, "a busy runner is not replaced")
}

// registerRunner registers a persistent runner (ControlRegisterRunner, as
// config.sh does): the status code and the runner's config.
func registerRunner(t *testing.T, srv *githubtest.Server, token, name string, labels []string) (int, string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"token": token, "name": name, "labels": labels})
	var ans struct {
		RunnerConfig string `json:"runner_config"`
	}
	code := do(t, "POST", srv.URL()+"_test/runners/register", "", string(b), &ans).StatusCode
	return code, ans.RunnerConfig
}

// claimOnMachine claims with a runner config, saying the runner runs on
// machineID: the status code and, on 200, the answer.
func claimOnMachine(t *testing.T, srv *githubtest.Server, cfg, machineID string) (int, claimAnswer) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"jit_config": cfg, "machine_id": machineID})
	resp, err := http.Post(srv.URL()+"_test/runners/claim", "application/json", strings.NewReader(string(b)))
	require.NoError(t, err)
	defer resp.Body.Close()
	var ans claimAnswer
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&ans))
	}
	return resp.StatusCode, ans
}
