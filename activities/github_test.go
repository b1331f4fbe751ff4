package activities_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
)

const (
	ghOwner = "octo"
	ghRepo  = "hello"
	ghToken = "ghp_activitiestesttoken"
	headSHA = "0123456789abcdef0123456789abcdef01234567"
	nextSHA = "89abcdef0123456789abcdef0123456789abcdef"
	// The test activity environment runs activities as this workflow.
	testWorkflowID = "default-test-workflow-id"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// githubActivities returns the GitHub activities registered in a test
// activity environment, with their log.
func githubActivities(t *testing.T, clients *gh.Clients) (*activities.GitHub, *testsuite.TestActivityEnvironment, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	a := &activities.GitHub{
		Clients: clients, UIBaseURL: "http://localhost:8233/", Namespace: "drydock",
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	return a, env, logs
}

func tokenClients(t *testing.T, srv *githubtest.Server) *gh.Clients {
	t.Helper()
	srv.AddRepo(ghOwner, ghRepo)
	srv.AddToken(ghToken, "drydock-bot")
	cs, err := gh.NewClients(gh.Config{Token: ghToken, APIURL: srv.URL()})
	require.NoError(t, err)
	return cs
}

func appClients(t *testing.T, srv *githubtest.Server) *gh.Clients {
	t.Helper()
	key, keyFile := githubtest.GenerateAppKey(t)
	srv.AddApp(31, "drydock-preview", &key.PublicKey)
	srv.AddInstallation(31, 4100)
	srv.AddRepo(ghOwner, ghRepo)
	cs, err := gh.NewClients(gh.Config{AppID: 31, AppPrivateKeyFile: keyFile, APIURL: srv.EnterpriseURL()})
	require.NoError(t, err)
	return cs
}

// previewReport is one mode's run of TestGitHubActivitiesReportAPreview:
// the GitHub activities over the test server, and what GitHub shows.
type previewReport struct {
	srv          *githubtest.Server
	a            *activities.GitHub
	env          *testsuite.TestActivityEnvironment
	installation int64  // 0: the token's
	author       string // who GitHub says made the deployments and the comment
	workflowURL  string
}

// fetchSpec checks that the spec comes from the base branch.
func (p previewReport) fetchSpec(t *testing.T) {
	t.Helper()
	val, err := p.env.ExecuteActivity(p.a.FetchPreviewSpec, activities.FetchSpecInput{
		Owner: ghOwner, Repo: ghRepo, Ref: "main", Path: ".drydock/preview.yml", InstallationID: p.installation,
	})
	require.NoError(t, err)
	var spec activities.FetchSpecResult
	require.NoError(t, val.Get(&spec))
	assert.Equal(t, activities.FetchSpecResult{Found: true, Content: "build: make\n"}, spec)
	val, err = p.env.ExecuteActivity(p.a.FetchPreviewSpec, activities.FetchSpecInput{
		Owner: ghOwner, Repo: ghRepo, Ref: "main", Path: ".drydock/absent.yml", InstallationID: p.installation,
	})
	require.NoError(t, err)
	require.NoError(t, val.Get(&spec))
	assert.Equal(t, activities.FetchSpecResult{}, spec)
}

// deploy deploys the head (a retry finds the same deployment), then a push:
// the new deployment's success retires the old one.
func (p previewReport) deploy(t *testing.T) {
	t.Helper()
	in := activities.DeploymentInput{Owner: ghOwner, Repo: ghRepo, Number: 42, InstallationID: p.installation, SHA: headSHA, Environment: activities.PreviewEnvironment(42)}
	var first, retried activities.DeploymentRef
	val, err := p.env.ExecuteActivity(p.a.StartDeployment, in)
	require.NoError(t, err)
	require.NoError(t, val.Get(&first))
	val, err = p.env.ExecuteActivity(p.a.StartDeployment, in)
	require.NoError(t, err)
	require.NoError(t, val.Get(&retried))
	assert.Equal(t, first, retried)
	assert.NotZero(t, first.ID)
	assert.False(t, first.Skipped)

	status := activities.DeploymentStatusInput{
		Owner: ghOwner, Repo: ghRepo, InstallationID: p.installation, DeploymentID: first.ID,
		State: gh.StatusSuccess, EnvironmentURL: "https://pr-42.preview.example", Description: "Ready",
	}
	_, err = p.env.ExecuteActivity(p.a.SetDeploymentStatus, status)
	require.NoError(t, err)

	ds := p.srv.Deployments(ghOwner, ghRepo)
	require.Len(t, ds, 1)
	assert.Equal(t, "preview/pr-42", ds[0].Environment)
	assert.Equal(t, p.author, ds[0].Creator.Login)
	require.Len(t, ds[0].Statuses, 2)
	assert.Equal(t, "in_progress", ds[0].Statuses[0].State)
	assert.Equal(t, p.workflowURL, ds[0].Statuses[0].LogURL, "the log is the workflow in the Temporal UI")
	assert.Equal(t, "success", ds[0].Statuses[1].State)
	assert.Equal(t, "https://pr-42.preview.example", ds[0].Statuses[1].EnvironmentURL)
	assert.Equal(t, p.workflowURL, ds[0].Statuses[1].LogURL)

	// A push: the new deployment's success retires the old one.
	in.SHA = nextSHA
	in.Environment = "" // defaults to PreviewEnvironment(Number)
	var second activities.DeploymentRef
	val, err = p.env.ExecuteActivity(p.a.StartDeployment, in)
	require.NoError(t, err)
	require.NoError(t, val.Get(&second))
	assert.NotEqual(t, first.ID, second.ID)
	status.DeploymentID = second.ID
	_, err = p.env.ExecuteActivity(p.a.SetDeploymentStatus, status)
	require.NoError(t, err)
	ds = p.srv.Deployments(ghOwner, ghRepo)
	require.Len(t, ds, 2)
	assert.Equal(t, "preview/pr-42", ds[1].Environment)
	assert.Equal(t, "inactive", ds[0].Statuses[len(ds[0].Statuses)-1].State)
	assert.Equal(t, "success", ds[1].Statuses[len(ds[1].Statuses)-1].State)
}

// comment checks that the PR comment is created once, then edited in place.
func (p previewReport) comment(t *testing.T) {
	t.Helper()
	report := gh.Report{State: gh.StateReady, URL: "https://pr-42.preview.example", SHA: nextSHA, Branch: "feature/x",
		UpdatedAt: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
	_, err := p.env.ExecuteActivity(p.a.ReportOnPR, activities.CommentInput{Owner: ghOwner, Repo: ghRepo, Number: 42, InstallationID: p.installation, Report: report})
	require.NoError(t, err)
	report.State, report.Note = gh.StateDestroyed, "torn down: PR closed"
	_, err = p.env.ExecuteActivity(p.a.ReportOnPR, activities.CommentInput{Owner: ghOwner, Repo: ghRepo, Number: 42, InstallationID: p.installation, Report: report})
	require.NoError(t, err)
	comments := p.srv.Comments(ghOwner, ghRepo, 42)
	require.Len(t, comments, 1)
	c := comments[0]
	assert.Equal(t, 1, c.Edits)
	assert.Equal(t, p.author, c.User.Login)
	assert.True(t, strings.HasPrefix(c.Body, gh.Marker))
	assert.Contains(t, c.Body, "]("+p.workflowURL+")")
	assert.Contains(t, c.Body, "**State:** Destroyed")
	assert.Contains(t, c.Body, "`89abcde`")
}

func TestGitHubActivitiesReportAPreview(t *testing.T) {
	for _, mode := range []string{"token", "app"} {
		t.Run(mode, func(t *testing.T) {
			srv := githubtest.New(t)
			clients := tokenClients
			author := "drydock-bot"
			var installation int64
			if mode == "app" {
				clients, author, installation = appClients, "drydock-preview[bot]", 4100
			}
			a, env, logs := githubActivities(t, clients(t, srv))
			workflowURL := "http://localhost:8233/namespaces/drydock/workflows/" + testWorkflowID
			srv.SetFile(ghOwner, ghRepo, "main", ".drydock/preview.yml", "build: make\n")
			p := previewReport{srv: srv, a: a, env: env, installation: installation, author: author, workflowURL: workflowURL}

			p.fetchSpec(t)
			p.deploy(t)
			p.comment(t)

			for _, r := range srv.Requests() {
				if strings.HasSuffix(r.Path, "/absent.yml") {
					assert.Equal(t, 404, r.Status)
					continue
				}
				assert.Less(t, r.Status, 400, "%s %s", r.Method, r.Path)
			}
			assert.NotContains(t, logs.String(), ghToken)
			assert.NotContains(t, logs.String(), "ghs_")
		})
	}
}

func TestGitHubActivitiesLocalModeSkips(t *testing.T) {
	srv := githubtest.New(t)
	a, env, logs := githubActivities(t, nil)

	val, err := env.ExecuteActivity(a.StartDeployment, activities.DeploymentInput{Owner: ghOwner, Repo: ghRepo, Number: 42, SHA: headSHA})
	require.NoError(t, err)
	var ref activities.DeploymentRef
	require.NoError(t, val.Get(&ref))
	assert.Equal(t, activities.DeploymentRef{Skipped: true}, ref)

	_, err = env.ExecuteActivity(a.SetDeploymentStatus, activities.DeploymentStatusInput{Owner: ghOwner, Repo: ghRepo, DeploymentID: 1, State: "success"})
	require.NoError(t, err)
	_, err = env.ExecuteActivity(a.ReportOnPR, activities.CommentInput{Owner: ghOwner, Repo: ghRepo, Number: 42, Report: gh.Report{State: gh.StateReady}})
	require.NoError(t, err)

	val, err = env.ExecuteActivity(a.FetchPreviewSpec, activities.FetchSpecInput{Owner: ghOwner, Repo: ghRepo, Ref: "main", Path: ".drydock/preview.yml"})
	require.NoError(t, err)
	var spec activities.FetchSpecResult
	require.NoError(t, val.Get(&spec))
	assert.Equal(t, activities.FetchSpecResult{Skipped: true}, spec)

	out := logs.String()
	assert.Equal(t, 4, strings.Count(out, "GitHub reporting skipped: no GitHub credentials configured"), out)
	assert.Contains(t, out, "level=INFO")
	assert.Contains(t, out, "repo=octo/hello pr=42")
	assert.Empty(t, srv.Requests(), "nothing talks to GitHub")
}

func TestGitHubActivitiesErrorClassification(t *testing.T) {
	srv := githubtest.New(t)
	a, env, logs := githubActivities(t, tokenClients(t, srv))
	deploy := activities.DeploymentInput{Owner: ghOwner, Repo: ghRepo, Number: 42, SHA: headSHA}

	appErr := func(err error) *temporal.ApplicationError {
		t.Helper()
		var ae *temporal.ApplicationError
		require.True(t, errors.As(err, &ae), "%v", err)
		return ae
	}
	nonRetryable := func(err error, typ string) {
		t.Helper()
		ae := appErr(err)
		assert.Equal(t, typ, ae.Type(), "%v", err)
		assert.True(t, ae.NonRetryable(), "%s must not be retried", typ)
		assert.NotContains(t, err.Error(), ghToken)
	}

	// 422: GitHub rejects the deployment.
	srv.FailNext(githubtest.RouteCreateDeployment, 1, githubtest.Error(422, "Validation Failed"))
	_, err := env.ExecuteActivity(a.StartDeployment, deploy)
	nonRetryable(err, activities.ErrTypeGitHubRejected)

	// 404: a repository the credentials cannot see.
	_, err = env.ExecuteActivity(a.StartDeployment, activities.DeploymentInput{Owner: ghOwner, Repo: "private", Number: 1, SHA: headSHA})
	nonRetryable(err, activities.ErrTypeGitHubRejected)
	_, err = env.ExecuteActivity(a.SetDeploymentStatus, activities.DeploymentStatusInput{Owner: ghOwner, Repo: ghRepo, DeploymentID: 1, State: "success"})
	nonRetryable(err, activities.ErrTypeGitHubRejected)
	_, err = env.ExecuteActivity(a.ReportOnPR, activities.CommentInput{Owner: ghOwner, Repo: "private", Number: 1})
	nonRetryable(err, activities.ErrTypeGitHubRejected)

	// Bad input never reaches GitHub.
	before := len(srv.Requests())
	_, err = env.ExecuteActivity(a.StartDeployment, activities.DeploymentInput{Owner: ghOwner, Repo: ghRepo, Number: 42, SHA: "abc1234"})
	nonRetryable(err, activities.ErrTypeInvalidArgument)
	_, err = env.ExecuteActivity(a.SetDeploymentStatus, activities.DeploymentStatusInput{Owner: ghOwner, Repo: ghRepo, DeploymentID: 1, State: "done"})
	nonRetryable(err, activities.ErrTypeInvalidArgument)
	assert.Len(t, srv.Requests(), before)

	// 502: retried with the policy's backoff.
	srv.FailNext(githubtest.RouteListIssueComments, 1, githubtest.BadGateway())
	_, err = env.ExecuteActivity(a.ReportOnPR, activities.CommentInput{Owner: ghOwner, Repo: ghRepo, Number: 42, Report: gh.Report{State: gh.StateReady}})
	ae := appErr(err)
	assert.False(t, ae.NonRetryable())
	assert.Equal(t, activities.ErrTypeGitHubUnavailable, ae.Type())
	assert.Zero(t, ae.NextRetryDelay())

	// A secondary rate limit: retried after GitHub's Retry-After.
	srv.FailNext(githubtest.RouteGetContent, 1, githubtest.SecondaryRateLimit(9*time.Second))
	_, err = env.ExecuteActivity(a.FetchPreviewSpec, activities.FetchSpecInput{Owner: ghOwner, Repo: ghRepo, Ref: "main", Path: ".drydock/preview.yml"})
	ae = appErr(err)
	assert.False(t, ae.NonRetryable())
	assert.Equal(t, activities.ErrTypeGitHubRateLimited, ae.Type())
	assert.Equal(t, 9*time.Second, ae.NextRetryDelay())

	assert.NotContains(t, logs.String(), ghToken)
}

func TestGitHubActivitiesAppNeedsAnInstallation(t *testing.T) {
	srv := githubtest.New(t)
	a, env, _ := githubActivities(t, appClients(t, srv)) // no default installation
	_, err := env.ExecuteActivity(a.StartDeployment, activities.DeploymentInput{Owner: ghOwner, Repo: ghRepo, Number: 42, SHA: headSHA})
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "%v", err)
	assert.Equal(t, activities.ErrTypeInvalidArgument, ae.Type())
	assert.Contains(t, err.Error(), "GITHUB_APP_INSTALLATION_ID")
	assert.Empty(t, srv.Requests())
}

func TestSpecTooLargeIsRejected(t *testing.T) {
	srv := githubtest.New(t)
	a, env, _ := githubActivities(t, tokenClients(t, srv))
	srv.SetFile(ghOwner, ghRepo, "main", ".drydock/preview.yml", strings.Repeat("#", activities.MaxPreviewSpecBytes+1))
	_, err := env.ExecuteActivity(a.FetchPreviewSpec, activities.FetchSpecInput{Owner: ghOwner, Repo: ghRepo, Ref: "main", Path: ".drydock/preview.yml"})
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "%v", err)
	assert.Equal(t, activities.ErrTypePreviewSpecTooLarge, ae.Type())
	assert.True(t, ae.NonRetryable())
}

func TestDeployNamesAndLinks(t *testing.T) {
	assert.Equal(t, "preview/pr-42", activities.PreviewEnvironment(42))
	assert.Equal(t, "http://localhost:8233/namespaces/default/workflows/preview:octo%2Fhello:42",
		activities.TemporalUIWorkflowURL("http://localhost:8233/", "", "preview:octo/hello:42"))
}

// beatGate sits between the GitHub activities and the GitHub double: the
// first request after arm waits until the activity heartbeats (or 5s pass,
// counted as a miss), so an activity passes only if it heartbeats while its
// GitHub call is in flight.
type beatGate struct {
	armed  atomic.Bool
	beat   chan struct{}
	missed atomic.Int32
}

func newBeatGate(t *testing.T, upstream string) (*beatGate, string) {
	t.Helper()
	g := &beatGate{beat: make(chan struct{}, 1)}
	target, err := url.Parse(upstream)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.armed.CompareAndSwap(true, false) {
			select {
			case <-g.beat:
			case <-time.After(5 * time.Second):
				g.missed.Add(1)
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return g, srv.URL
}

// arm gates the next request, forgetting heartbeats seen so far.
func (g *beatGate) arm() {
	select {
	case <-g.beat:
	default:
	}
	g.armed.Store(true)
}

func (g *beatGate) heartbeat(*activity.Info, converter.EncodedValues) {
	select {
	case g.beat <- struct{}{}:
	default:
	}
}

// The workflows give the GitHub activities a heartbeat timeout: they must
// heartbeat while they wait for GitHub, or a slow answer (a rate-limit wait,
// a retry) times them out although the worker is alive.
func TestGitHubActivitiesHeartbeatWhileGitHubIsSlow(t *testing.T) {
	srv := githubtest.New(t)
	srv.AddRepo(ghOwner, ghRepo)
	srv.AddToken(ghToken, "drydock-bot")
	srv.SetFile(ghOwner, ghRepo, "main", ".drydock/preview.yml", "build: make\n")
	srv.SetPullRequest(ghOwner, ghRepo, githubtest.PullRequest{Number: 42, State: "open", HeadSHA: headSHA})
	gate, apiURL := newBeatGate(t, srv.URL())
	clients, err := gh.NewClients(gh.Config{Token: ghToken, APIURL: apiURL})
	require.NoError(t, err)
	a, env, _ := githubActivities(t, clients)
	a.HeartbeatEvery = 20 * time.Millisecond
	env.SetOnActivityHeartbeatListener(gate.heartbeat)

	run := func(name string, fn any, arg any) converter.EncodedValue {
		t.Helper()
		gate.arm()
		v, err := env.ExecuteActivity(fn, arg)
		require.NoError(t, err, name)
		assert.Zero(t, gate.missed.Swap(0), "%s did not heartbeat while GitHub was answering", name)
		return v
	}
	run("FetchPreviewSpec", a.FetchPreviewSpec, activities.FetchSpecInput{Owner: ghOwner, Repo: ghRepo, Ref: "main", Path: ".drydock/preview.yml"})
	run("PullRequestState", a.PullRequestState, activities.PullRequestRef{Owner: ghOwner, Repo: ghRepo, Number: 42})
	var dep activities.DeploymentRef
	require.NoError(t, run("StartDeployment", a.StartDeployment, activities.DeploymentInput{Owner: ghOwner, Repo: ghRepo, Number: 42, SHA: headSHA}).Get(&dep))
	run("SetDeploymentStatus", a.SetDeploymentStatus, activities.DeploymentStatusInput{Owner: ghOwner, Repo: ghRepo, DeploymentID: dep.ID, State: gh.StatusSuccess})
	run("ReportOnPR", a.ReportOnPR, activities.CommentInput{Owner: ghOwner, Repo: ghRepo, Number: 42, Report: gh.Report{State: gh.StateReady}})
}
