package activities_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/gh"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
)

var githubActs *activities.GitHub // method values name the activities in workflows

func deployStart() *activities.DeploymentInput {
	return &activities.DeploymentInput{Owner: ghOwner, Repo: ghRepo, Number: 42, SHA: headSHA}
}

func deployComment(state string) *activities.CommentInput {
	return &activities.CommentInput{Owner: ghOwner, Repo: ghRepo, Number: 42, Report: gh.Report{State: state, SHA: headSHA}}
}

// One DeployReport starts the deployment and writes the comment; the next
// marks the deployment a success and rewrites the comment.
func TestDeployReportStartsTheDeploymentThenMarksItReady(t *testing.T) {
	srv := githubtest.New(t)
	a, env, _ := githubActivities(t, tokenClients(t, srv))

	val, err := env.ExecuteActivity(a.DeployReport, activities.DeployReportInput{Start: deployStart(), Comment: deployComment(gh.StateDeploying)})
	require.NoError(t, err)
	var res activities.DeployReportResult
	require.NoError(t, val.Get(&res))
	require.NotZero(t, res.DeploymentID)
	assert.Empty(t, res.Failed)
	ds := srv.Deployments(ghOwner, ghRepo)
	require.Len(t, ds, 1)
	assert.Equal(t, res.DeploymentID, ds[0].ID)
	require.Len(t, ds[0].Statuses, 1)
	assert.Equal(t, "in_progress", ds[0].Statuses[0].State)
	comments := srv.Comments(ghOwner, ghRepo, 42)
	require.Len(t, comments, 1)
	assert.Contains(t, comments[0].Body, "**State:** Deploying")

	_, err = env.ExecuteActivity(a.DeployReport, activities.DeployReportInput{
		Status: &activities.DeploymentStatusInput{Owner: ghOwner, Repo: ghRepo, DeploymentID: res.DeploymentID, State: gh.StatusSuccess,
			EnvironmentURL: "https://pr-42.preview.example", Description: "preview ready"},
		Comment: deployComment(gh.StateReady),
	})
	require.NoError(t, err)
	ds = srv.Deployments(ghOwner, ghRepo)
	require.Len(t, ds, 1)
	assert.Equal(t, "success", ds[0].Statuses[len(ds[0].Statuses)-1].State)
	comments = srv.Comments(ghOwner, ghRepo, 42)
	require.Len(t, comments, 1, "the comment is edited in place")
	assert.Contains(t, comments[0].Body, "**State:** Ready")
}

// A transient failure of one part fails the attempt with that part's
// error, as classifyGitHub made it; the retry finds the deployment the
// failed attempt created instead of creating a second one.
func TestDeployReportRetriesATransientFailureWithoutDuplicates(t *testing.T) {
	srv := githubtest.New(t)
	a, env, _ := githubActivities(t, tokenClients(t, srv))
	in := activities.DeployReportInput{Start: deployStart(), Comment: deployComment(gh.StateDeploying)}

	srv.FailNext(githubtest.RouteListIssueComments, 1, githubtest.BadGateway())
	_, err := env.ExecuteActivity(a.DeployReport, in)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "%v", err)
	assert.False(t, ae.NonRetryable())
	assert.Equal(t, activities.ErrTypeGitHubUnavailable, ae.Type(), "the part's own error, not a generic one")
	require.Len(t, srv.Deployments(ghOwner, ghRepo), 1, "the deployment part succeeded")

	val, err := env.ExecuteActivity(a.DeployReport, in)
	require.NoError(t, err)
	var res activities.DeployReportResult
	require.NoError(t, val.Get(&res))
	ds := srv.Deployments(ghOwner, ghRepo)
	require.Len(t, ds, 1, "the retry found the deployment")
	assert.Equal(t, ds[0].ID, res.DeploymentID)
	assert.Len(t, ds[0].Statuses, 1, "the in_progress status is not repeated")
	assert.Len(t, srv.Comments(ghOwner, ghRepo, 42), 1)
}

// A part GitHub refuses for good (a comment the app may not write) is not
// retried, and does not cost the deployment the other part started.
func TestDeployReportKeepsTheDeploymentWhenTheCommentIsRefused(t *testing.T) {
	srv := githubtest.New(t)
	a, env, _ := githubActivities(t, tokenClients(t, srv))
	srv.FailNext(githubtest.RouteListIssueComments, 1, githubtest.Error(403, "Resource not accessible by integration"))
	val, err := env.ExecuteActivity(a.DeployReport, activities.DeployReportInput{Start: deployStart(), Comment: deployComment(gh.StateDeploying)})
	require.NoError(t, err, "nothing a retry could cure")
	var res activities.DeployReportResult
	require.NoError(t, val.Get(&res))
	assert.NotZero(t, res.DeploymentID)
	require.Len(t, res.Failed, 1)
	assert.True(t, strings.HasPrefix(res.Failed[0], "comment on the PR: "), res.Failed[0])
	assert.Empty(t, srv.Comments(ghOwner, ghRepo, 42))
}

// reportTwice runs one DeployReport with two attempts at most.
func reportTwice(ctx workflow.Context, in activities.DeployReportInput) (activities.DeployReportResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 50 * time.Millisecond, MaximumAttempts: 2},
	})
	var res activities.DeployReportResult
	err := workflow.ExecuteActivity(ctx, githubActs.DeployReport, in).Get(ctx, &res)
	return res, err
}

// On the last attempt the server allows, DeployReport succeeds with what it
// got: the deployment's ID is kept, and the part that kept failing is named.
func TestDeployReportLastAttemptKeepsWhatSucceeded(t *testing.T) {
	srv := githubtest.New(t)
	a, _, _ := githubActivities(t, tokenClients(t, srv))
	queue := "report-" + t.Name()
	w := worker.New(devServer.Client(), queue, worker.Options{})
	w.RegisterWorkflow(reportTwice)
	w.RegisterActivity(a)
	require.NoError(t, w.Start())
	defer w.Stop()

	srv.FailNext(githubtest.RouteListIssueComments, 2, githubtest.BadGateway())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := devServer.Client().ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: queue}, reportTwice,
		activities.DeployReportInput{Start: deployStart(), Comment: deployComment(gh.StateDeploying)})
	require.NoError(t, err)
	var res activities.DeployReportResult
	require.NoError(t, run.Get(ctx, &res), "the last attempt does not fail the activity")
	ds := srv.Deployments(ghOwner, ghRepo)
	require.Len(t, ds, 1, "two attempts, one deployment")
	assert.Equal(t, ds[0].ID, res.DeploymentID)
	require.Len(t, res.Failed, 1)
	assert.Contains(t, res.Failed[0], "comment on the PR: ")
	assert.Empty(t, srv.Comments(ghOwner, ghRepo, 42))
}
