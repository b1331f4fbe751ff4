package gh_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
)

const (
	owner = "octo"
	repo  = "hello"
	sha   = "0123456789abcdef0123456789abcdef01234567"
	sha2  = "89abcdef0123456789abcdef0123456789abcdef"
	env   = "preview/pr-42"
	token = "ghp_drydocktesttoken"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// tokenAPI is the reporting API over a personal token against srv.
func tokenAPI(t *testing.T, srv *githubtest.Server, apiURL string) *gh.API {
	t.Helper()
	srv.AddRepo(owner, repo)
	srv.AddToken(token, "drydock-bot")
	cs, err := gh.NewClients(gh.Config{Token: token, APIURL: apiURL})
	require.NoError(t, err)
	api, err := cs.API(0)
	require.NoError(t, err)
	return api
}

func TestDeployEnsureDeploymentIsIdempotent(t *testing.T) {
	srv := githubtest.New(t)
	api := tokenAPI(t, srv, srv.URL())

	id, err := api.EnsureDeployment(ctx(t), owner, repo, sha, env)
	require.NoError(t, err)
	again, err := api.EnsureDeployment(ctx(t), owner, repo, sha, env)
	require.NoError(t, err)
	assert.Equal(t, id, again)

	ds := srv.Deployments(owner, repo)
	require.Len(t, ds, 1)
	d := ds[0]
	assert.Equal(t, id, d.ID)
	assert.Equal(t, sha, d.Ref)
	assert.Equal(t, sha, d.SHA)
	assert.Equal(t, env, d.Environment)
	assert.False(t, d.AutoMerge)
	assert.NotNil(t, d.RequiredContexts, "required_contexts must be sent (empty), or GitHub requires every status check")
	assert.Empty(t, d.RequiredContexts)
	assert.True(t, d.TransientEnvironment)
	assert.False(t, d.ProductionEnvironment)
	require.NotNil(t, d.Description)
	assert.Equal(t, "Drydock preview", *d.Description)
	assert.Equal(t, "drydock-bot", d.Creator.Login)
	assert.Equal(t, 1, srv.Count(githubtest.RouteCreateDeployment))

	// Another commit or another environment is another deployment.
	other, err := api.EnsureDeployment(ctx(t), owner, repo, sha2, env)
	require.NoError(t, err)
	assert.NotEqual(t, id, other)
	elsewhere, err := api.EnsureDeployment(ctx(t), owner, repo, sha, "preview/pr-43")
	require.NoError(t, err)
	assert.NotEqual(t, id, elsewhere)
	assert.Len(t, srv.Deployments(owner, repo), 3)
}

func TestDeployEnsureDeploymentRejectsBadInput(t *testing.T) {
	srv := githubtest.New(t)
	api := tokenAPI(t, srv, srv.URL())
	for _, tc := range []struct{ owner, repo, sha, env string }{
		{owner, repo, "abc1234", env}, // short SHAs defeat the sha filter
		{owner, repo, strings.ToUpper(sha), env},
		{owner, repo, sha, ""},
		{"", repo, sha, env},
		{owner, "a/b", sha, env},
	} {
		_, err := api.EnsureDeployment(ctx(t), tc.owner, tc.repo, tc.sha, tc.env)
		require.ErrorIs(t, err, gh.ErrInvalid, "%+v", tc)
		assert.True(t, gh.Classify(err).Permanent)
	}
	assert.Empty(t, srv.Requests(), "invalid input is refused before any request")

	_, err := api.EnsureDeployment(ctx(t), owner, "missing", sha, env)
	require.Error(t, err)
	f := gh.Classify(err)
	assert.True(t, f.Permanent)
	assert.Equal(t, 404, f.StatusCode)
}

func states(d githubtest.Deployment) []string {
	var s []string
	for _, st := range d.Statuses {
		s = append(s, st.State)
	}
	return s
}

func TestDeployStatusesRecordedInOrder(t *testing.T) {
	srv := githubtest.New(t)
	api := tokenAPI(t, srv, srv.URL())
	id, err := api.EnsureDeployment(ctx(t), owner, repo, sha, env)
	require.NoError(t, err)

	logURL := "http://localhost:8233/namespaces/default/workflows/preview:octo%2Fhello:42"
	require.NoError(t, api.SetDeploymentStatus(ctx(t), owner, repo, id, gh.StatusInProgress, "", logURL, "Building"))
	// A retry after a crash does not add a duplicate.
	require.NoError(t, api.SetDeploymentStatus(ctx(t), owner, repo, id, gh.StatusInProgress, "", logURL, "Building"))
	require.NoError(t, api.SetDeploymentStatus(ctx(t), owner, repo, id, gh.StatusSuccess, "https://pr-42.example.dev", logURL, "Ready"))
	require.NoError(t, api.SetDeploymentStatus(ctx(t), owner, repo, id, gh.StatusSuccess, "https://pr-42.example.dev", logURL, "Ready"))
	require.NoError(t, api.SetDeploymentStatus(ctx(t), owner, repo, id, gh.StatusFailure, "", logURL, strings.Repeat("x", 200)))
	require.NoError(t, api.SetDeploymentStatus(ctx(t), owner, repo, id, gh.StatusError, "", logURL, "boom"))
	require.NoError(t, api.SetDeploymentStatus(ctx(t), owner, repo, id, gh.StatusInactive, "", logURL, "PR closed"))

	d := srv.Deployments(owner, repo)[0]
	assert.Equal(t, []string{"in_progress", "success", "failure", "error", "inactive"}, states(d))
	assert.Equal(t, "https://pr-42.example.dev", d.Statuses[1].EnvironmentURL)
	assert.Equal(t, logURL, d.Statuses[0].LogURL)
	assert.Equal(t, logURL, d.Statuses[0].TargetURL, "GitHub copies log_url to target_url")
	for i, st := range d.Statuses {
		assert.Equal(t, st.State == "success", st.AutoInactive, "status %d (%s)", i, st.State)
	}
	assert.Equal(t, 140, len([]rune(d.Statuses[2].Description)), "descriptions are cut to GitHub's 140 characters")

	err = api.SetDeploymentStatus(ctx(t), owner, repo, id, "queued", "", "", "")
	require.ErrorIs(t, err, gh.ErrInvalid)
	err = api.SetDeploymentStatus(ctx(t), owner, repo, id+999, gh.StatusSuccess, "", "", "")
	require.Error(t, err)
	assert.True(t, gh.Classify(err).Permanent, "an unknown deployment is a 404")
}

func TestDeployDeactivateSuperseded(t *testing.T) {
	srv := githubtest.New(t)
	api := tokenAPI(t, srv, srv.URL())
	c := ctx(t)
	var ids []int64
	for i, state := range []string{gh.StatusSuccess, gh.StatusFailure, gh.StatusSuccess, gh.StatusInProgress, gh.StatusSuccess} {
		id, err := api.EnsureDeployment(c, owner, repo, fmt.Sprintf("%040x", i+1), env)
		require.NoError(t, err)
		require.NoError(t, api.SetDeploymentStatus(c, owner, repo, id, state, "https://pr-42.example.dev", "", ""))
		ids = append(ids, id)
	}
	other, err := api.EnsureDeployment(c, owner, repo, sha, "preview/pr-7")
	require.NoError(t, err)
	require.NoError(t, api.SetDeploymentStatus(c, owner, repo, other, gh.StatusSuccess, "", "", ""))

	// GitHub's auto_inactive leaves transient deployments alone.
	for _, d := range srv.Deployments(owner, repo)[:4] {
		assert.NotEqual(t, "inactive", states(d)[len(d.Statuses)-1])
	}

	n, err := api.DeactivateSuperseded(c, owner, repo, ids[4])
	require.NoError(t, err)
	assert.Equal(t, 3, n, "the two successes and the abandoned in_progress")
	ds := srv.Deployments(owner, repo)
	assert.Equal(t, []string{"success", "inactive"}, states(ds[0]))
	assert.Equal(t, []string{"failure"}, states(ds[1]))
	assert.Equal(t, []string{"success", "inactive"}, states(ds[2]))
	assert.Equal(t, []string{"in_progress", "inactive"}, states(ds[3]))
	assert.Equal(t, []string{"success"}, states(ds[4]), "the deployment itself stays")
	assert.Equal(t, []string{"success"}, states(ds[5]), "other environments are untouched")

	srv.ResetRequests()
	n, err = api.DeactivateSuperseded(c, owner, repo, ids[4])
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, 1, srv.Count(githubtest.RouteListDeploymentStatuses), "stops at the first inactive predecessor")
}

func TestCommentUpsertCreatesOnceThenEdits(t *testing.T) {
	srv := githubtest.New(t)
	api := tokenAPI(t, srv, srv.URL())
	// More than a page of other people's comments, one quoting the marker.
	for i := range 130 {
		body := fmt.Sprintf("comment %d", i)
		if i == 5 {
			body = gh.Marker + "\nnot Drydock's"
		}
		srv.AddComment(owner, repo, 42, "reviewer", body)
	}

	id, err := api.UpsertComment(ctx(t), owner, repo, 42, gh.Marker+"\nfirst")
	require.NoError(t, err)
	assert.Equal(t, 1, srv.Count(githubtest.RouteCreateIssueComment))
	assert.Equal(t, 2, srv.Count(githubtest.RouteListIssueComments), "both pages were read")

	again, err := api.UpsertComment(ctx(t), owner, repo, 42, gh.Marker+"\nsecond")
	require.NoError(t, err)
	assert.Equal(t, id, again)
	assert.Equal(t, 1, srv.Count(githubtest.RouteCreateIssueComment), "found on page 2 by its marker")
	assert.Equal(t, 1, srv.Count(githubtest.RouteUpdateIssueComment))

	// The same body again changes nothing.
	_, err = api.UpsertComment(ctx(t), owner, repo, 42, gh.Marker+"\nsecond")
	require.NoError(t, err)
	assert.Equal(t, 1, srv.Count(githubtest.RouteUpdateIssueComment))

	// A body without the marker gets it.
	_, err = api.UpsertComment(ctx(t), owner, repo, 42, "third")
	require.NoError(t, err)

	var mine []githubtest.Comment
	for _, c := range srv.Comments(owner, repo, 42) {
		if c.User.Login == "drydock-bot" {
			mine = append(mine, c)
		} else if c.ID != 0 && strings.Contains(c.Body, "not Drydock's") {
			assert.Zero(t, c.Edits, "someone else's comment with the marker is left alone")
		}
	}
	require.Len(t, mine, 1)
	assert.Equal(t, gh.Marker+"\nthird", mine[0].Body)
	assert.Equal(t, 2, mine[0].Edits)
	assert.Empty(t, srv.Comments(owner, repo, 43))

	// The comment was deleted by someone: the next upsert writes a new one.
	srv.ResetRequests()
	_, err = api.Client().Issues.DeleteComment(ctx(t), owner, repo, id)
	require.NoError(t, err)
	newID, err := api.UpsertComment(ctx(t), owner, repo, 42, "fourth")
	require.NoError(t, err)
	assert.NotEqual(t, id, newID)
	assert.Equal(t, 1, srv.Count(githubtest.RouteCreateIssueComment))

	_, err = api.UpsertComment(ctx(t), owner, repo, 42, strings.Repeat("x", 70000))
	require.ErrorIs(t, err, gh.ErrInvalid)
}

func TestSpecFetchFile(t *testing.T) {
	srv := githubtest.New(t)
	api := tokenAPI(t, srv, srv.URL())
	spec := strings.Repeat("build: make\n", 20) // longer than one 60-character base64 line
	srv.SetFile(owner, repo, "main", ".drydock/preview.yml", spec)
	srv.SetFile(owner, repo, "release", ".drydock/other.yml", "x")

	b, found, err := api.FetchFile(ctx(t), owner, repo, "main", ".drydock/preview.yml")
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, spec, string(b))

	for _, tc := range []struct{ ref, path string }{
		{"release", ".drydock/preview.yml"}, // not on that branch
		{"main", "missing.yml"},
		{"no-such-branch", ".drydock/preview.yml"},
	} {
		b, found, err = api.FetchFile(ctx(t), owner, repo, tc.ref, tc.path)
		require.NoError(t, err, "%+v", tc)
		assert.False(t, found, "%+v", tc)
		assert.Nil(t, b)
	}
	_, found, err = api.FetchFile(ctx(t), owner, "no-such-repo", "main", ".drydock/preview.yml")
	require.NoError(t, err)
	assert.False(t, found)

	_, _, err = api.FetchFile(ctx(t), owner, repo, "main", ".drydock")
	require.ErrorIs(t, err, gh.ErrUnusable, "a directory is not a spec")
	_, _, err = api.FetchFile(ctx(t), owner, repo, "main", "../etc/passwd")
	require.Error(t, err)
	assert.True(t, gh.Classify(err).Permanent)
}

func TestGitHubEnterpriseBaseURL(t *testing.T) {
	srv := githubtest.New(t)
	api := tokenAPI(t, srv, srv.EnterpriseURL())
	srv.SetFile(owner, repo, "main", "a.txt", "a")

	id, err := api.EnsureDeployment(ctx(t), owner, repo, sha, env)
	require.NoError(t, err)
	require.NoError(t, api.SetDeploymentStatus(ctx(t), owner, repo, id, gh.StatusSuccess, "", "", ""))
	_, err = api.UpsertComment(ctx(t), owner, repo, 1, "hi")
	require.NoError(t, err)
	_, found, err := api.FetchFile(ctx(t), owner, repo, "main", "a.txt")
	require.NoError(t, err)
	assert.True(t, found)

	reqs := srv.Requests()
	require.NotEmpty(t, reqs)
	for _, r := range reqs {
		assert.True(t, r.Enterprise, "%s %s", r.Method, r.Path)
		assert.True(t, strings.HasPrefix(r.Path, "/api/v3/"), r.Path)
	}
	// URLs in answers use the GHES form too.
	d := srv.Deployments(owner, repo)[0]
	assert.Contains(t, d.URL, "/api/v3/repos/octo/hello/deployments/")
}

func TestGitHubBadTokenIsPermanent(t *testing.T) {
	srv := githubtest.New(t)
	srv.AddRepo(owner, repo)
	srv.AddToken(token, "drydock-bot")
	cs, err := gh.NewClients(gh.Config{Token: "ghp_wrong", APIURL: srv.URL()})
	require.NoError(t, err)
	api, err := cs.API(0)
	require.NoError(t, err)

	_, err = api.EnsureDeployment(ctx(t), owner, repo, sha, env)
	require.Error(t, err)
	f := gh.Classify(err)
	assert.True(t, f.Permanent)
	assert.Equal(t, 401, f.StatusCode)
	assert.NotContains(t, err.Error(), "ghp_wrong")
	assert.Equal(t, 401, srv.Requests()[0].Status)
}

func TestGitHubClassifyFaults(t *testing.T) {
	srv := githubtest.New(t)
	api := tokenAPI(t, srv, srv.URL())
	call := func() error {
		_, err := api.EnsureDeployment(ctx(t), owner, repo, sha, env)
		return err
	}

	srv.FailNext(githubtest.RouteListDeployments, 1, githubtest.BadGateway())
	f := gh.Classify(call())
	assert.Equal(t, gh.Failure{StatusCode: 502}, f)

	srv.FailNext(githubtest.RouteListDeployments, 1, githubtest.Error(503, "Service Unavailable"))
	assert.False(t, gh.Classify(call()).Permanent)

	srv.FailNext(githubtest.RouteCreateDeployment, 1, githubtest.Error(422, "Validation Failed"))
	f = gh.Classify(call())
	assert.True(t, f.Permanent)
	assert.Equal(t, 422, f.StatusCode)

	srv.FailNext(githubtest.RouteListDeployments, 1, githubtest.Error(403, "Resource not accessible by integration"))
	assert.True(t, gh.Classify(call()).Permanent, "403 without rate-limit signs is permanent")

	srv.FailNext(githubtest.RouteListDeployments, 1, githubtest.Error(429, "Too Many Requests"))
	f = gh.Classify(call())
	assert.False(t, f.Permanent)
	assert.True(t, f.RateLimited)
	assert.Equal(t, time.Minute, f.RetryAfter, "no Retry-After: wait a minute, as GitHub advises")

	require.NoError(t, call()) // all faults used up
}

func TestGitHubClassifyRateLimits(t *testing.T) {
	srv := githubtest.New(t)
	// Each rate-limited client below is fresh: go-github remembers a
	// limit and refuses further calls until it passes.
	fresh := func() *gh.API { return tokenAPI(t, srv, srv.URL()) }
	api := fresh()
	call := func() error {
		_, err := api.EnsureDeployment(ctx(t), owner, repo, sha, env)
		return err
	}
	srv.FailNext(githubtest.RouteListDeployments, 1, githubtest.SecondaryRateLimit(7*time.Second))
	f := gh.Classify(call())
	assert.True(t, f.RateLimited)
	assert.False(t, f.Permanent)
	assert.Equal(t, 7*time.Second, f.RetryAfter)
	assert.Equal(t, 403, f.StatusCode)
	// The client now refuses locally until the limit passes, still retryable.
	f = gh.Classify(call())
	assert.True(t, f.RateLimited)
	assert.Greater(t, f.RetryAfter, 5*time.Second)

	api = fresh()
	srv.FailNext(githubtest.RouteListDeployments, 1, githubtest.RateLimit(time.Now().Add(30*time.Second)))
	f = gh.Classify(call())
	assert.True(t, f.RateLimited)
	assert.InDelta(t, float64(31*time.Second), float64(f.RetryAfter), float64(2*time.Second))
}

func TestGitHubClassifyNoAnswerAndPlainErrors(t *testing.T) {
	// No answer at all: transient.
	dead := githubtest.NewServer()
	dead.AddToken(token, "x")
	deadURL := dead.URL()
	dead.Close()
	cs, err := gh.NewClients(gh.Config{Token: token, APIURL: deadURL})
	require.NoError(t, err)
	api, err := cs.API(0)
	require.NoError(t, err)
	_, err = api.EnsureDeployment(ctx(t), owner, repo, sha, env)
	require.Error(t, err)
	assert.Equal(t, gh.Failure{}, gh.Classify(err))

	assert.Equal(t, gh.Failure{}, gh.Classify(nil))
	assert.True(t, gh.Classify(fmt.Errorf("wrapped: %w", gh.ErrInvalid)).Permanent)
	assert.False(t, gh.Classify(errors.New("something else")).Permanent)
	assert.False(t, gh.Classify(context.DeadlineExceeded).Permanent)
}

func TestPullRequestState(t *testing.T) {
	srv := githubtest.New(t)
	api := tokenAPI(t, srv, srv.URL())
	srv.SetPullRequest(owner, repo, githubtest.PullRequest{Number: 7, State: "open", HeadSHA: sha})
	srv.SetPullRequest(owner, repo, githubtest.PullRequest{Number: 8, State: "closed", Merged: true, HeadSHA: sha2})

	st, found, err := api.PullRequest(ctx(t), owner, repo, 7)
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, gh.PullRequestState{Open: true, HeadSHA: sha}, st)

	st, found, err = api.PullRequest(ctx(t), owner, repo, 8)
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, gh.PullRequestState{Open: false, Merged: true, HeadSHA: sha2}, st)

	// A pull request GitHub does not show is not found, without an error.
	_, found, err = api.PullRequest(ctx(t), owner, repo, 9)
	require.NoError(t, err)
	assert.False(t, found)

	_, _, err = api.PullRequest(ctx(t), owner, repo, 0)
	assert.ErrorIs(t, err, gh.ErrInvalid)
}

// PullRequest reads the labels; RemoveLabel removes one (escaped in the
// path, matched as GitHub matches names), and one already gone is fine.
func TestPullRequestLabels(t *testing.T) {
	srv := githubtest.New(t)
	api := tokenAPI(t, srv, srv.URL())
	srv.SetPullRequest(owner, repo, githubtest.PullRequest{Number: 7, State: "open", HeadSHA: sha, Labels: []string{"bug", "Preview me/now"}})

	st, _, err := api.PullRequest(ctx(t), owner, repo, 7)
	require.NoError(t, err)
	assert.Equal(t, []string{"bug", "Preview me/now"}, st.Labels)

	require.NoError(t, api.RemoveLabel(ctx(t), owner, repo, 7, "Preview me/now"))
	st, _, err = api.PullRequest(ctx(t), owner, repo, 7)
	require.NoError(t, err)
	assert.Equal(t, []string{"bug"}, st.Labels)
	require.NoError(t, api.RemoveLabel(ctx(t), owner, repo, 7, "Preview me/now"), "a label already gone counts as removed")
	assert.ErrorIs(t, api.RemoveLabel(ctx(t), owner, repo, 7, ""), gh.ErrInvalid)
}
