package gh_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
)

var (
	orgScope  = pools.Scope{Kind: pools.ScopeOrg, Org: "acme"}
	repoScope = pools.Scope{Kind: pools.ScopeRepo, Repo: owner + "/" + repo}
)

// claim connects the runner of an encoded JIT config to the double, as the
// stand-in runner does; it returns the HTTP status.
func claim(t *testing.T, srv *githubtest.Server, config string) int {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"jit_config": config})
	resp, err := http.Post(srv.URL()+"_test/runners/claim", "application/json", bytes.NewReader(b))
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func TestRunnersJITConfigBothScopes(t *testing.T) {
	srv := githubtest.New(t)
	api := tokenAPI(t, srv, srv.URL())
	srv.AddOrg("acme")

	for _, sc := range []pools.Scope{orgScope, repoScope} {
		t.Run(sc.Kind, func(t *testing.T) {
			labels := []string{"self-hosted", "linux", "drydock-" + sc.Kind}
			enc, id, err := api.GenerateJITConfig(ctx(t), sc, "drydock-ci-7-1", labels, 0)
			require.NoError(t, err)
			assert.NotZero(t, id)
			cfg, err := githubtest.DecodeJITConfig(enc)
			require.NoError(t, err)
			assert.Equal(t, id, cfg.RunnerID)
			assert.Equal(t, "drydock-ci-7-1", cfg.Name)
			assert.Equal(t, labels, cfg.Labels)

			rs := srv.Runners(sc)
			require.Len(t, rs, 1)
			assert.Equal(t, githubtest.Runner{
				ID: id, Name: "drydock-ci-7-1", OS: "unknown", Status: "offline", Ephemeral: true,
				Labels: labels, GroupID: pools.DefaultRunnerGroupID, Scope: sc,
			}, rs[0], "group 0 means the Default group")

			// The name is taken in this scope: 409.
			_, _, err = api.GenerateJITConfig(ctx(t), sc, "DRYDOCK-ci-7-1", labels, 3)
			require.ErrorIs(t, err, gh.ErrRunnerExists)
			f := gh.Classify(err)
			assert.True(t, f.Permanent)
			assert.Equal(t, http.StatusConflict, f.StatusCode)
			assert.NotContains(t, err.Error(), enc)

			// Another name, another group.
			_, id2, err := api.GenerateJITConfig(ctx(t), sc, "drydock-ci-8-1", labels[:1], 3)
			require.NoError(t, err)
			rs = srv.Runners(sc)
			require.Len(t, rs, 2)
			assert.Equal(t, id2, rs[1].ID)
			assert.EqualValues(t, 3, rs[1].GroupID)
		})
	}
	assert.Equal(t, 3, srv.Count(githubtest.RouteGenerateOrgJITConfig))
	assert.Equal(t, 3, srv.Count(githubtest.RouteGenerateRepoJITConfig))
}

// Bad input is refused before any request.
func TestRunnersJITConfigRefusesBadInput(t *testing.T) {
	srv := githubtest.New(t)
	api := tokenAPI(t, srv, srv.URL())
	srv.AddOrg("acme")
	srv.ResetRequests()
	for _, tc := range []struct {
		sc     pools.Scope
		name   string
		labels []string
	}{
		{pools.Scope{Kind: pools.ScopeOrg}, "r", []string{"x"}},
		{pools.Scope{Kind: pools.ScopeRepo, Repo: "norepo"}, "r", []string{"x"}},
		{pools.Scope{Kind: "enterprise", Org: "acme"}, "r", []string{"x"}},
		{orgScope, "", []string{"x"}},
		{orgScope, "r", nil},
	} {
		_, _, err := api.GenerateJITConfig(ctx(t), tc.sc, tc.name, tc.labels, 1)
		require.ErrorIs(t, err, gh.ErrInvalid, "%+v", tc)
	}
	assert.Empty(t, srv.Requests())
}

// An unknown organization or repository is GitHub's 404.
func TestRunnersJITConfigUnknownScope(t *testing.T) {
	srv := githubtest.New(t)
	api := tokenAPI(t, srv, srv.URL())
	srv.AddOrg("acme")
	_, _, err := api.GenerateJITConfig(ctx(t), pools.Scope{Kind: pools.ScopeOrg, Org: "nobody"}, "r", []string{"x"}, 1)
	require.Error(t, err)
	assert.Equal(t, http.StatusNotFound, gh.Classify(err).StatusCode)
	_, _, err = api.GenerateJITConfig(ctx(t), pools.Scope{Kind: pools.ScopeRepo, Repo: owner + "/missing"}, "r", []string{"x"}, 1)
	require.Error(t, err)
	assert.Equal(t, http.StatusNotFound, gh.Classify(err).StatusCode)
}

func TestRunnersRegistrationToken(t *testing.T) {
	srv := githubtest.New(t)
	api := tokenAPI(t, srv, srv.URL())
	for _, sc := range []pools.Scope{{Kind: pools.ScopeOrg, Org: owner}, repoScope} { // the repository's owner is an organization too
		tok, exp, err := api.RegistrationToken(ctx(t), sc)
		require.NoError(t, err)
		assert.Len(t, tok, 29)
		assert.WithinDuration(t, time.Now().Add(time.Hour), exp, 5*time.Second)
	}
	assert.Len(t, srv.RegistrationTokens(), 2)
	assert.Equal(t, 1, srv.Count(githubtest.RouteCreateOrgRegistrationToken))
	assert.Equal(t, 1, srv.Count(githubtest.RouteCreateRepoRegistrationToken))

	srv.FailNext(githubtest.RouteCreateOrgRegistrationToken, 1, githubtest.BadGateway())
	_, _, err := api.RegistrationToken(ctx(t), pools.Scope{Kind: pools.ScopeOrg, Org: owner})
	require.Error(t, err)
	assert.False(t, gh.Classify(err).Permanent, "a 502 is worth retrying")
}

func TestRunnersWorkflowJobStatus(t *testing.T) {
	srv := githubtest.New(t)
	api := tokenAPI(t, srv, srv.URL())
	job := srv.AddJob(owner, repo, githubtest.Job{ID: 4242, Name: "test", Labels: []string{"self-hosted", "drydock"}})
	assert.Equal(t, githubtest.JobQueued, job.Status)

	status, conclusion, runner, err := api.WorkflowJob(ctx(t), owner, repo, 4242)
	require.NoError(t, err)
	assert.Equal(t, []string{"queued", "", ""}, []string{status, conclusion, runner})

	enc, _, err := api.GenerateJITConfig(ctx(t), repoScope, "drydock-ci-4242-1", []string{"self-hosted", "drydock", "linux"}, 1)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, claim(t, srv, enc))
	status, conclusion, runner, err = api.WorkflowJob(ctx(t), owner, repo, 4242)
	require.NoError(t, err)
	assert.Equal(t, []string{"in_progress", "", "drydock-ci-4242-1"}, []string{status, conclusion, runner})

	// The full object, as go-github reads it.
	j, _, err := api.Client().Actions.GetWorkflowJobByID(ctx(t), owner, repo, 4242)
	require.NoError(t, err)
	assert.Equal(t, job.RunID, j.GetRunID())
	assert.Equal(t, "test", j.GetName())
	assert.Equal(t, []string{"self-hosted", "drydock"}, j.Labels)
	assert.EqualValues(t, 1, j.GetRunnerGroupID())
	assert.Contains(t, j.GetHTMLURL(), fmt.Sprintf("/%s/%s/actions/runs/%d/job/4242", owner, repo, job.RunID))

	srv.CancelJob(4242) // in progress: cancelled anyway
	status, conclusion, _, err = api.WorkflowJob(ctx(t), owner, repo, 4242)
	require.NoError(t, err)
	assert.Equal(t, []string{"completed", "cancelled"}, []string{status, conclusion})
	assert.Empty(t, srv.Runners(repoScope), "its JIT runner went away")

	_, _, _, err = api.WorkflowJob(ctx(t), owner, repo, 1)
	require.Error(t, err)
	assert.Equal(t, http.StatusNotFound, gh.Classify(err).StatusCode)
	_, _, _, err = api.WorkflowJob(ctx(t), owner, repo, 0)
	require.ErrorIs(t, err, gh.ErrInvalid)
}

func TestRunnersListAndRemove(t *testing.T) {
	srv := githubtest.New(t)
	api := tokenAPI(t, srv, srv.URL())
	srv.AddOrg("acme")
	srv.AddRepo("acme", "widgets")
	for _, sc := range []pools.Scope{orgScope, repoScope} {
		t.Run(sc.Kind, func(t *testing.T) {
			// More than one page of runners.
			ids := map[string]int64{}
			for i := range 130 {
				name := fmt.Sprintf("drydock-pool-%d-1", i)
				_, id, err := api.GenerateJITConfig(ctx(t), sc, name, []string{"drydock"}, 1)
				require.NoError(t, err)
				ids[name] = id
			}
			srv.ResetRequests()
			rs, err := api.ListRunners(ctx(t), sc)
			require.NoError(t, err)
			require.Len(t, rs, 130)
			assert.Equal(t, 2, srv.Count(githubtest.RouteListOrgRunners)+srv.Count(githubtest.RouteListRepoRunners), "two pages")
			assert.Equal(t, gh.Runner{ID: ids["drydock-pool-0-1"], Name: "drydock-pool-0-1", Status: gh.RunnerOffline, Labels: []string{"drydock"}}, rs[0])

			r, found, err := api.RunnerByName(ctx(t), sc, "drydock-pool-129-1")
			require.NoError(t, err)
			require.True(t, found)
			assert.Equal(t, ids["drydock-pool-129-1"], r.ID)
			assert.False(t, r.Online())
			_, found, err = api.RunnerByName(ctx(t), sc, "drydock-pool-999-1")
			require.NoError(t, err)
			assert.False(t, found)

			busyRunnerStays(t, srv, api, sc)

			require.NoError(t, api.RemoveRunner(ctx(t), sc, ids["drydock-pool-5-1"]))
			err = api.RemoveRunner(ctx(t), sc, ids["drydock-pool-5-1"])
			require.ErrorIs(t, err, gh.ErrRunnerNotFound)
			rs, err = api.ListRunners(ctx(t), sc)
			require.NoError(t, err)
			assert.Len(t, rs, 130)
		})
	}
	// Scopes are separate: a repository runner is not the organization's.
	assert.Len(t, srv.Runners(orgScope), 130)
	assert.Len(t, srv.Runners(repoScope), 130)
	err := api.RemoveRunner(ctx(t), orgScope, srv.Runners(repoScope)[0].ID)
	require.ErrorIs(t, err, gh.ErrRunnerNotFound)
}

// busyRunnerStays registers a runner of sc that takes a job, and checks
// that it is busy and cannot be removed.
func busyRunnerStays(t *testing.T, srv *githubtest.Server, api *gh.API, sc pools.Scope) {
	t.Helper()
	// A job for the pool: the oldest runner to claim takes it and is busy.
	jobRepo := repo
	if sc.Kind == pools.ScopeOrg {
		jobRepo = "widgets"
	}
	owner := map[string]string{pools.ScopeOrg: "acme", pools.ScopeRepo: owner}[sc.Kind]
	srv.AddJob(owner, jobRepo, githubtest.Job{Labels: []string{"drydock"}})
	enc, busyID, err := api.GenerateJITConfig(ctx(t), sc, "drydock-busy", []string{"drydock"}, 1)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, claim(t, srv, enc))
	busy, found, err := api.RunnerByName(ctx(t), sc, "drydock-busy")
	require.NoError(t, err)
	require.True(t, found)
	assert.True(t, busy.Busy)
	assert.True(t, busy.Online())

	err = api.RemoveRunner(ctx(t), sc, busyID)
	require.ErrorIs(t, err, gh.ErrRunnerBusy)
	assert.Equal(t, http.StatusUnprocessableEntity, gh.Classify(err).StatusCode)
}

func TestRunnersWebURL(t *testing.T) {
	for _, tc := range []struct{ api, web string }{
		{"https://api.github.com/", "https://github.com"},
		{"https://ghe.example.com/api/v3/", "https://ghe.example.com"},
		{"https://example.com/ghe/api/v3", "https://example.com/ghe"},
		{"http://127.0.0.1:9999/", "http://127.0.0.1:9999"},
	} {
		cs, err := gh.NewClients(gh.Config{Token: token, APIURL: tc.api})
		require.NoError(t, err)
		assert.Equal(t, tc.web, cs.WebURL(), tc.api)
		u, err := cs.RunnerURL(repoScope)
		require.NoError(t, err)
		assert.Equal(t, tc.web+"/octo/hello", u)
		u, err = cs.RunnerURL(orgScope)
		require.NoError(t, err)
		assert.Equal(t, tc.web+"/acme", u)
	}
}

// A GitHub App's default installation drives the runner APIs, on GHES too.
func TestRunnersWithAppOnEnterprise(t *testing.T) {
	srv := githubtest.New(t)
	cs := appClients(t, srv, srv.EnterpriseURL(), installationID)
	api, err := cs.API(0)
	require.NoError(t, err)
	orgOfRepo := pools.Scope{Kind: pools.ScopeOrg, Org: owner}
	_, id, err := api.GenerateJITConfig(ctx(t), orgOfRepo, "drydock-ci-1-1", []string{"drydock"}, 0)
	require.NoError(t, err)
	rs, err := api.ListRunners(ctx(t), orgOfRepo)
	require.NoError(t, err)
	require.Len(t, rs, 1)
	assert.Equal(t, id, rs[0].ID)
	require.NoError(t, api.RemoveRunner(ctx(t), orgOfRepo, id))
	for _, r := range srv.Requests() {
		if r.Route != githubtest.RouteCreateInstallationToken {
			assert.Equal(t, "installation", r.Auth, r.Path)
			assert.True(t, r.Enterprise, r.Path)
		}
	}
	u, err := cs.RunnerURL(orgOfRepo)
	require.NoError(t, err)
	assert.Equal(t, strings.TrimSuffix(srv.URL(), "/")+"/"+owner, u)
}
