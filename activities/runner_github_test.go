package activities_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/activities"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/testing/githubtest"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

func TestRunnerRemoveRunner(t *testing.T) {
	r := newRunnerRig(t, false, nil)
	api, err := r.a.GitHub.API(0)
	require.NoError(t, err)
	remove := func(name string) activities.RemoveRunnerResult {
		t.Helper()
		v, err := r.env.ExecuteActivity(r.a.RemoveRunner, activities.RemoveRunnerInput{Pool: "ci", RunnerName: name})
		require.NoError(t, err)
		var res activities.RemoveRunnerResult
		require.NoError(t, v.Get(&res))
		return res
	}
	assert.Equal(t, activities.RemoveRunnerResult{NotFound: true}, remove("drydock-ci-1-1"))

	_, _, err = api.GenerateJITConfig(context.Background(), runnerScope, "drydock-ci-1-1", []string{"drydock"}, 1)
	require.NoError(t, err)
	assert.Equal(t, activities.RemoveRunnerResult{Removed: true}, remove("drydock-ci-1-1"))
	assert.Empty(t, r.srv.Runners(runnerScope))

	// A runner running a job is refused by GitHub: Busy, not an error.
	r.srv.AddJob(ghOwner, ghRepo, githubtest.Job{ID: 5, Labels: []string{"drydock"}})
	busy, _, err := api.GenerateJITConfig(context.Background(), runnerScope, "drydock-ci-5-1", []string{"drydock"}, 1)
	require.NoError(t, err)
	claimRunner(t, r.srv.URL()+"_test/runners/claim", busy)
	assert.Equal(t, activities.RemoveRunnerResult{Busy: true}, remove("drydock-ci-5-1"))
	assert.Len(t, r.srv.Runners(runnerScope), 1)
}

func TestRunnerJobStatus(t *testing.T) {
	r := newRunnerRig(t, false, nil)
	r.srv.AddJob(ghOwner, ghRepo, githubtest.Job{ID: 9001, Labels: []string{"drydock"}})
	status := func() activities.JobStatusResult {
		t.Helper()
		v, err := r.env.ExecuteActivity(r.a.JobStatus, activities.JobStatusInput{Owner: ghOwner, Repo: ghRepo, JobID: 9001})
		require.NoError(t, err)
		var res activities.JobStatusResult
		require.NoError(t, v.Get(&res))
		return res
	}
	assert.Equal(t, activities.JobStatusResult{Status: "queued"}, status())
	r.srv.CancelJob(9001)
	assert.Equal(t, activities.JobStatusResult{Status: "completed", Conclusion: "cancelled"}, status())

	_, err := r.env.ExecuteActivity(r.a.JobStatus, activities.JobStatusInput{Owner: ghOwner, Repo: ghRepo, JobID: 1})
	ae := appError(t, err)
	assert.Equal(t, activities.ErrTypeGitHubRejected, ae.Type(), "an unknown job is a 404")
	assert.True(t, ae.NonRetryable())
}

func TestRunnerActivitiesNeedGitHub(t *testing.T) {
	r := newRunnerRig(t, true, nil)
	for name, run := range map[string]func() error{
		"StartJITRunner": func() error {
			_, err := r.env.ExecuteActivity(r.a.StartJITRunner, activities.StartRunnerInput{Pool: "ci", MachineID: r.machine, RunnerName: "drydock-ci-1-1"})
			return err
		},
		"RegisterPersistent": func() error {
			_, err := r.env.ExecuteActivity(r.a.RegisterPersistent, activities.RegisterInput{Pool: "ci", MachineID: r.machine, RunnerName: "drydock-ci-m1"})
			return err
		},
		"RemoveRunner": func() error {
			_, err := r.env.ExecuteActivity(r.a.RemoveRunner, activities.RemoveRunnerInput{Pool: "ci", RunnerName: "drydock-ci-1-1"})
			return err
		},
		"JobStatus": func() error {
			_, err := r.env.ExecuteActivity(r.a.JobStatus, activities.JobStatusInput{Owner: ghOwner, Repo: ghRepo, JobID: 1})
			return err
		},
	} {
		ae := appError(t, run())
		assert.Equal(t, activities.ErrTypeGitHubNotConfigured, ae.Type(), name)
		assert.True(t, ae.NonRetryable(), name)
		assert.Contains(t, ae.Error(), "runner pools need GitHub credentials (GITHUB_TOKEN or GITHUB_APP_*)", name)
	}
}

func TestRunnerGitHubRunnerDirectory(t *testing.T) {
	assert.Nil(t, activities.GitHubRunnerDirectory(nil), "local mode: no directory")
	srv := githubtest.New(t)
	clients := tokenClients(t, srv)
	api, err := clients.API(0)
	require.NoError(t, err)
	_, id, err := api.GenerateJITConfig(context.Background(), runnerScope, "drydock-ci-1-1", []string{"drydock"}, 1)
	require.NoError(t, err)

	dir := activities.GitHubRunnerDirectory(clients)
	rs, err := dir.ListRunners(context.Background(), runnerScope)
	require.NoError(t, err)
	assert.Equal(t, []activities.RegisteredRunner{{ID: id, Name: "drydock-ci-1-1"}}, rs)
	require.NoError(t, dir.RemoveRunner(context.Background(), runnerScope, id))
	require.NoError(t, dir.RemoveRunner(context.Background(), runnerScope, id), "already gone")
	rs, err = dir.ListRunners(context.Background(), runnerScope)
	require.NoError(t, err)
	assert.Empty(t, rs)
}

// CheckLeaseHolders reports the holders whose RunnerJob is not running
// (closed or unknown) and the provisioning children that closed.
func TestRunnerCheckLeaseHolders(t *testing.T) {
	queue := "holders-" + t.Name()
	w := worker.New(devServer.Client(), queue, worker.Options{})
	w.RegisterWorkflowWithOptions(func(ctx workflow.Context) error {
		return workflow.Await(ctx, func() bool { return false })
	}, workflow.RegisterOptions{Name: "Waits"})
	require.NoError(t, w.Start())
	defer w.Stop()
	base := time.Now().UnixNano() % 1_000_000_000
	running, terminated, unknown := base+1, base+2, base+3
	c := devServer.Client()
	ctx := context.Background()
	for _, id := range []string{runnerapi.JobWorkflowID(running), runnerapi.JobWorkflowID(terminated), "prov-" + t.Name()} {
		_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, "Waits")
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.TerminateWorkflow(context.Background(), id, "", "test done") })
	}
	require.NoError(t, c.TerminateWorkflow(ctx, runnerapi.JobWorkflowID(terminated), "", "operator"))
	require.NoError(t, c.TerminateWorkflow(ctx, "prov-"+t.Name(), "", "operator"))

	a := &activities.Runners{Pools: &pools.Config{Pools: []pools.Pool{testPool()}}, Temporal: c, TaskQueue: queue}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	in := activities.LeaseCheckInput{Pool: "ci", Holders: []activities.LeaseHolder{
		{JobID: running, Attempt: 1, RunnerName: "drydock-ci-r"},
		{JobID: terminated, Attempt: 2, RunnerName: "drydock-ci-t"},
		{JobID: unknown, Attempt: 1},
	}, Provisions: []string{"prov-" + t.Name()}}
	v, err := env.ExecuteActivity(a.CheckLeaseHolders, in)
	require.NoError(t, err)
	var res activities.LeaseCheckResult
	require.NoError(t, v.Get(&res))
	assert.Equal(t, []activities.LeaseHolder{in.Holders[1], in.Holders[2]}, res.Gone, "local mode: no runner can be busy")
	assert.Equal(t, []string{"prov-" + t.Name()}, res.ProvisionsClosed)

	v, err = env.ExecuteActivity(a.PoolConfig, "ci")
	require.NoError(t, err)
	var cfg pools.Pool
	require.NoError(t, v.Get(&cfg))
	assert.Equal(t, testPool().Name, cfg.Name)
	_, err = env.ExecuteActivity(a.PoolConfig, "nope")
	assert.Equal(t, activities.ErrTypeUnknownPool, appError(t, err).Type())
}
