package intake_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// recordingJob stands in for RunnerJob: it records its input and the job
// events it receives (query "signals") and completes on completed.
func recordingJob(ctx workflow.Context, in runnerapi.RunnerJobInput) ([]runnerapi.WorkflowJobEvent, error) {
	return recordSignals(ctx, []runnerapi.WorkflowJobEvent{in.Job}, runnerapi.SignalJobEvent,
		func(ev runnerapi.WorkflowJobEvent) bool { return ev.Action == "completed" })
}

// The workflow ID policies hold against a real server: one RunnerJob per
// job, ever, however often and late queued is redelivered.
func TestWorkflowJobsThroughTemporal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tc := devServer.Client()
	startWorker(t, recordingJob, runnerapi.RunnerJobName)
	jobs, err := intake.NewWorkflowJobs(intake.WorkflowJobOptions{Temporal: tc, Pools: testPools(t), Logger: quietLogger()})
	require.NoError(t, err)
	srv := webhookServer(t, "workflow_job", jobs, 100)

	const jobID = 5550001
	id := runnerapi.JobWorkflowID(jobID)
	job := edit{"workflow_job.id", jobID}
	runner := edit{"workflow_job.runner_name", "drydock-linux-5550001-1"}

	start := time.Now()
	code, out := postHTTP(t, srv.URL, "workflow_job", "e2e-job-queued", jobPayload(t, "queued", linuxLabels, job))
	require.Equal(t, http.StatusAccepted, code, out)
	assert.Equal(t, id, out["workflow_id"])
	assert.Less(t, time.Since(start), 2*time.Second)
	runID := requireRunningJob(ctx, t, tc, jobID)

	// queued redelivered under another ID while the job runs: the same run.
	code, out = postHTTP(t, srv.URL, "workflow_job", "e2e-job-queued-2", jobPayload(t, "queued", linuxLabels, job))
	require.Equal(t, http.StatusAccepted, code, out)
	desc, err := tc.DescribeWorkflow(ctx, id, "")
	require.NoError(t, err)
	assert.Equal(t, runID, desc.WorkflowExecution.RunID)

	code, out = postHTTP(t, srv.URL, "workflow_job", "e2e-job-progress", jobPayload(t, "in_progress", linuxLabels, job, runner))
	require.Equal(t, http.StatusAccepted, code, out)
	code, out = postHTTP(t, srv.URL, "workflow_job", "e2e-job-done", jobPayload(t, "completed", linuxLabels, job, runner))
	require.Equal(t, http.StatusAccepted, code, out)
	var got []runnerapi.WorkflowJobEvent
	require.NoError(t, tc.GetWorkflow(ctx, id, runID).Get(ctx, &got))
	require.Len(t, got, 3)
	assert.Equal(t, []string{"queued", "in_progress", "completed"}, []string{got[0].Action, got[1].Action, got[2].Action})
	assert.Equal(t, "drydock-linux-5550001-1", got[2].RunnerName)

	// queued once more after the job finished: nothing starts.
	code, out = postHTTP(t, srv.URL, "workflow_job", "e2e-job-queued-3", jobPayload(t, "queued", linuxLabels, job))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "job already handled", out["reason"])
	desc, err = tc.DescribeWorkflow(ctx, id, "")
	require.NoError(t, err)
	assert.Equal(t, runID, desc.WorkflowExecution.RunID, "still the completed run")
	assert.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, desc.Status)

	// completed again: the job is finished and no pool workflow runs here.
	code, out = postHTTP(t, srv.URL, "workflow_job", "e2e-job-done-2", jobPayload(t, "completed", linuxLabels, job, runner))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "no-op: job not tracked and pool linux is not running", out["reason"])
}

// requireRunningJob requires job jobID's RunnerJob to be running with its
// search attributes (pool linux, acme/store-front); it returns the run's ID.
func requireRunningJob(ctx context.Context, t *testing.T, tc client.Client, jobID int64) string {
	t.Helper()
	desc, err := tc.DescribeWorkflow(ctx, runnerapi.JobWorkflowID(jobID), "")
	require.NoError(t, err)
	assert.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, desc.Status)
	pool, _ := desc.TypedSearchAttributes.GetKeyword(workflows.SearchAttrPool)
	gotJob, _ := desc.TypedSearchAttributes.GetInt64(workflows.SearchAttrJobID)
	repo, _ := desc.TypedSearchAttributes.GetKeyword(workflows.SearchAttrRepo)
	assert.Equal(t, "linux", pool)
	assert.EqualValues(t, jobID, gotJob)
	assert.Equal(t, "acme/store-front", repo)
	return desc.WorkflowExecution.RunID
}
