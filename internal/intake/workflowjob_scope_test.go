package intake_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/metrics"
	"github.com/drydock-dev/drydock/internal/pools"
)

// scopeHandler routes workflow_job deliveries to a fake Temporal with
// the given pools, counting deliveries in reg.
func scopeHandler(t *testing.T, tc intake.JobTemporal, cfg string, reg *metrics.Registry) *intake.Handler {
	t.Helper()
	c, err := pools.Parse([]byte(cfg))
	require.NoError(t, err)
	jobs, err := intake.NewWorkflowJobs(intake.WorkflowJobOptions{Temporal: tc, Pools: c, Logger: quietLogger()})
	require.NoError(t, err)
	mux := intake.NewMux()
	mux.Handle("workflow_job", jobs)
	opts := intake.Options{Secret: secret, Allowed: intake.AllowEveryone(), Router: intake.Dedupe(mux, intake.NewRecentDeliveries(100)), Logger: quietLogger()}
	if reg != nil {
		opts.Metrics = metrics.NewWebhook(reg)
	}
	h, err := intake.New(opts)
	require.NoError(t, err)
	return h
}

const scopedPools = `
pools:
  - {name: linux, labels: [self-hosted, linux], scope: {org: acme}, repositories: [acme/app, acme/lib], runner_group_id: 5}
  - {name: oss, labels: [self-hosted, oss], scope: {org: acme}, owners: [acme], runner_group_id: 6, allow_public: true}
`

func scopedJob(t *testing.T, action, owner, repo string, public bool, labels ...string) []byte {
	t.Helper()
	b, err := ghfixture.WorkflowJob(action, ghfixture.Job{ID: 9001, RunID: 90010, Name: "build", Owner: owner, Repo: repo, Org: owner,
		Public: public, Labels: labels, RunnerName: runnerFor(action)})
	require.NoError(t, err)
	return b
}

func runnerFor(action string) string {
	if action == "queued" {
		return ""
	}
	return "someone-elses-runner" // not one of Drydock's
}

// A job with the pool's labels from a repository the pool does not serve
// is acknowledged (200, a reason) and starts and signals nothing: no
// machine is leased for it. The delivery is counted with reason pool_scope.
func TestJobOutsideThePoolsRepositoriesStartsNothing(t *testing.T) {
	ft := &fakeJobs{}
	reg := metrics.New("webhook-test")
	h := scopeHandler(t, ft, scopedPools, reg)

	for i, tc := range []struct{ owner, repo string }{
		{"acme", "secret-sauce"}, // same organization, not listed
		{"evil", "app"},          // another owner, listed repository name
	} {
		for _, action := range []string{"queued", "in_progress", "completed"} {
			code, out := deliver(t, h, "workflow_job", action+"-"+tc.owner+"-"+tc.repo+string(rune('a'+i)), scopedJob(t, action, tc.owner, tc.repo, false, "self-hosted", "linux"))
			assert.Equal(t, http.StatusOK, code, out)
			assert.Equal(t, "runner pool linux does not serve repository "+tc.owner+"/"+tc.repo+" (not in its repositories or owners): no runner", out["reason"])
		}
	}
	assert.Equal(t, [2]int{0, 0}, ft.counts(), "nothing started, nothing signalled")

	rec := httptest.NewRecorder()
	reg.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	assert.Contains(t, rec.Body.String(), `drydock_webhook_deliveries_total{action="queued",event="workflow_job",outcome="ignored",reason="pool_scope"} 2`)

	// A listed repository (any case) is still routed.
	code, out := deliver(t, h, "workflow_job", "q-app", scopedJob(t, "queued", "Acme", "App", false, "self-hosted", "linux"))
	require.Equal(t, http.StatusAccepted, code, out)
	assert.Equal(t, "runner requested from pool linux", out["reason"])
	assert.Equal(t, [2]int{1, 0}, ft.counts())
}

// A public repository's job is refused unless the pool sets allow_public;
// a payload that does not say its repository is private counts as public.
func TestPublicRepositoryNeedsAllowPublic(t *testing.T) {
	ft := &fakeJobs{}
	reg := metrics.New("webhook-test")
	h := scopeHandler(t, ft, scopedPools, reg)

	code, out := deliver(t, h, "workflow_job", "q-public", scopedJob(t, "queued", "acme", "app", true, "self-hosted", "linux"))
	assert.Equal(t, http.StatusOK, code, out)
	assert.Equal(t, "runner pool linux does not take jobs of public repository acme/app (allow_public is off): no runner", out["reason"])

	// Visibility missing: "private" false decides. Both missing: public.
	raw := applyEdits(t, scopedJob(t, "queued", "acme", "app", false, "self-hosted", "linux"), edit{"repository.visibility", nil}, edit{"repository.private", nil})
	code, out = deliver(t, h, "workflow_job", "q-unsaid", raw)
	assert.Equal(t, http.StatusOK, code, out)
	assert.Contains(t, out["reason"], "public repository acme/app")
	// Visibility public wins over a stale private flag.
	raw = applyEdits(t, scopedJob(t, "queued", "acme", "app", false, "self-hosted", "linux"), edit{"repository.visibility", "public"})
	code, out = deliver(t, h, "workflow_job", "q-vis", raw)
	assert.Equal(t, http.StatusOK, code, out)
	assert.Contains(t, out["reason"], "public repository acme/app")
	// An in_progress of a public repository on another runner: nothing asked.
	code, _ = deliver(t, h, "workflow_job", "p-public", scopedJob(t, "in_progress", "acme", "app", true, "self-hosted", "linux"))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, [2]int{0, 0}, ft.counts(), "nothing started, nothing signalled")

	rec := httptest.NewRecorder()
	reg.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	assert.Contains(t, rec.Body.String(), `drydock_webhook_deliveries_total{action="queued",event="workflow_job",outcome="ignored",reason="public_repository"} 3`)

	// Internal (enterprise) and private repositories are routed; the pool
	// that allows public repositories takes a public one.
	raw = applyEdits(t, scopedJob(t, "queued", "acme", "app", false, "self-hosted", "linux"), edit{"repository.visibility", "internal"})
	code, out = deliver(t, h, "workflow_job", "q-internal", raw)
	require.Equal(t, http.StatusAccepted, code, out)
	b, err := ghfixture.WorkflowJob("queued", ghfixture.Job{ID: 9002, RunID: 90020, Name: "build", Owner: "acme", Repo: "site", Org: "acme",
		Public: true, Labels: []string{"self-hosted", "oss"}})
	require.NoError(t, err)
	code, out = deliver(t, h, "workflow_job", "q-oss", b)
	require.Equal(t, http.StatusAccepted, code, out)
	assert.Equal(t, "runner requested from pool oss", out["reason"])
	assert.Equal(t, [2]int{2, 0}, ft.counts())
}

// A completed job outside the scope that nevertheless ran on one of
// Drydock's runners still reaches the pool, so the machine is accounted.
func TestOutOfScopeJobOnOurRunnerStillReleasesIt(t *testing.T) {
	ft := &fakeJobs{signalErr: notFound}
	h := scopeHandler(t, ft, scopedPools, nil)
	b, err := ghfixture.WorkflowJob("completed", ghfixture.Job{ID: 9003, RunID: 90030, Name: "build", Owner: "acme", Repo: "secret-sauce", Org: "acme",
		Labels: []string{"self-hosted", "linux"}, RunnerName: "drydock-linux-9001-1"})
	require.NoError(t, err)
	code, out := deliver(t, h, "workflow_job", "c-ours", b)
	assert.Equal(t, http.StatusOK, code, out)
	require.Equal(t, [2]int{0, 2}, ft.counts(), "the job's workflow, then the pool's release")
}
