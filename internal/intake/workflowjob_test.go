package intake_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// fakeJobs records what the workflow_job router asks of Temporal.
type fakeJobs struct {
	mu       sync.Mutex
	executes []executeCall
	signals  []signalCall
	// startErr is returned by ExecuteWorkflow; signalErr by SignalWorkflow
	// for a workflow ID (nil: accept).
	startErr  error
	signalErr func(id string) error
}

type executeCall struct {
	Opts     client.StartWorkflowOptions
	Workflow any
	Args     []any
}

func (f *fakeJobs) ExecuteWorkflow(_ context.Context, opts client.StartWorkflowOptions, wf any, args ...any) (client.WorkflowRun, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.executes = append(f.executes, executeCall{Opts: opts, Workflow: wf, Args: args})
	if f.startErr != nil {
		return nil, f.startErr
	}
	return fakeRun{id: opts.ID}, nil
}

func (f *fakeJobs) SignalWorkflow(_ context.Context, id, runID, signal string, arg any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.signals = append(f.signals, signalCall{ID: id, RunID: runID, Signal: signal, Event: arg})
	if f.signalErr != nil {
		return f.signalErr(id)
	}
	return nil
}

func (f *fakeJobs) counts() [2]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return [2]int{len(f.executes), len(f.signals)}
}

func notFound(string) error { return serviceerror.NewNotFound("workflow not found") }

// testPools: linux takes [self-hosted, linux, x64] jobs, k8s the
// [self-hosted, k8s] ones of "queued.k8s".
func testPools(t *testing.T) *pools.Config {
	t.Helper()
	c, err := pools.Parse([]byte(`
pools:
  - {name: linux, labels: [self-hosted, linux, x64], scope: {org: Acme}, repositories: [acme/store-front, Acme/Lib], runner_group_id: 5}
  - {name: k8s, labels: [self-hosted, k8s], scope: {repo: bob/k8s-lab}}
`))
	require.NoError(t, err)
	return c
}

// jobHandler is the production composition: signature check, Dedupe, Mux,
// WorkflowJobs.
func jobHandler(t *testing.T, tc intake.JobTemporal) *intake.Handler {
	t.Helper()
	jobs, err := intake.NewWorkflowJobs(intake.WorkflowJobOptions{Temporal: tc, Pools: testPools(t), Logger: quietLogger()})
	require.NoError(t, err)
	mux := intake.NewMux()
	mux.Handle("workflow_job", jobs)
	h, err := intake.New(intake.Options{Secret: secret, Allowed: intake.AllowEveryone(), Router: intake.Dedupe(mux, intake.NewRecentDeliveries(100)), Logger: quietLogger()})
	require.NoError(t, err)
	return h
}

// exampleJob is the job the tests' workflow_job deliveries describe: a
// GitHub-hosted job (runs-on ubuntu-latest) of an organization's repository,
// delivered to a GitHub App installation.
func exampleJob() ghfixture.Job {
	return ghfixture.Job{
		ID: exampleJobID, RunID: 3100200300, Name: "test", WorkflowName: "CI",
		Owner: "Acme", Repo: "Store-Front", Org: "Acme", Labels: []string{"ubuntu-latest"},
		InstallationID: 4242, CreatedAt: exampleQueuedAt,
	}
}

var exampleQueuedAt = time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)

// jobPayload builds the workflow_job delivery for name about exampleJob,
// then applies edits (dotted paths; nil deletes). name is an action,
// "completed.failure", or "queued.k8s": a self-hosted [self-hosted, k8s]
// job of a user's repository, without an App installation.
func jobPayload(t *testing.T, name string, edits ...edit) []byte {
	t.Helper()
	job := exampleJob()
	action, variant, _ := strings.Cut(name, ".")
	if action == "in_progress" || action == "completed" {
		job.StartedAt = exampleQueuedAt.Add(time.Minute) // picked up a minute after it was queued
	}
	switch variant {
	case "failure":
		job.Conclusion = "failure"
	case "k8s":
		job.Owner, job.Repo, job.Org, job.InstallationID = "bob", "k8s-lab", "", 0
		job.Labels = []string{"self-hosted", "k8s"}
	}
	raw, err := ghfixture.WorkflowJob(action, job)
	require.NoError(t, err)
	return applyEdits(t, raw, edits...)
}

var linuxLabels = edit{"workflow_job.labels", []any{"self-hosted", "Linux"}}

const exampleJobID = 7310442015

func TestQueuedJobStartsRunnerJob(t *testing.T) {
	ft := &fakeJobs{}
	h := jobHandler(t, ft)
	code, out := deliver(t, h, "workflow_job", "q-1", jobPayload(t, "queued", linuxLabels))
	require.Equal(t, http.StatusAccepted, code, out)
	assert.Equal(t, "runner-job:7310442015", out["workflow_id"])
	assert.Equal(t, "runner requested from pool linux", out["reason"])

	require.Len(t, ft.executes, 1)
	call := ft.executes[0]
	assert.Equal(t, runnerapi.JobWorkflowID(exampleJobID), call.Opts.ID)
	assert.Equal(t, workflows.TaskQueue, call.Opts.TaskQueue)
	assert.Equal(t, enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE, call.Opts.WorkflowIDReusePolicy)
	assert.Equal(t, enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING, call.Opts.WorkflowIDConflictPolicy)
	assert.True(t, call.Opts.WorkflowExecutionErrorWhenAlreadyStarted, "a finished job must be told apart")
	sa := call.Opts.TypedSearchAttributes
	pool, _ := sa.GetKeyword(workflows.SearchAttrPool)
	jobID, _ := sa.GetInt64(workflows.SearchAttrJobID)
	repo, _ := sa.GetKeyword(workflows.SearchAttrRepo)
	assert.Equal(t, "linux", pool)
	assert.EqualValues(t, exampleJobID, jobID)
	assert.Equal(t, "acme/store-front", repo)
	assert.NotEmpty(t, call.Opts.StaticSummary)
	assert.Equal(t, runnerapi.RunnerJobName, call.Workflow)
	require.Len(t, call.Args, 1)
	assert.Equal(t, runnerapi.RunnerJobInput{Pool: "linux", Job: runnerapi.WorkflowJobEvent{
		DeliveryID:     "q-1",
		Action:         "queued",
		JobID:          exampleJobID,
		RunID:          3100200300,
		Name:           "test",
		WorkflowName:   "CI",
		Owner:          "Acme",
		Repo:           "Store-Front",
		Org:            "Acme", // the owner is an Organization
		Labels:         []string{"self-hosted", "Linux"},
		CreatedAt:      exampleQueuedAt,
		StartedAt:      exampleQueuedAt, // not picked up yet
		InstallationID: 4242,
	}}, call.Args[0])
	assert.Empty(t, ft.signals)
}

func TestQueuedForAUsersRepository(t *testing.T) {
	ft := &fakeJobs{}
	code, out := deliver(t, jobHandler(t, ft), "workflow_job", "q-k8s", jobPayload(t, "queued.k8s"))
	require.Equal(t, http.StatusAccepted, code, out)
	require.Len(t, ft.executes, 1)
	in := ft.executes[0].Args[0].(runnerapi.RunnerJobInput)
	assert.Equal(t, "k8s", in.Pool)
	assert.Equal(t, "bob", in.Job.Owner)
	assert.Empty(t, in.Job.Org, "a user's repository has no organization")
	assert.Empty(t, in.Job.RunnerName)
	assert.Equal(t, []string{"self-hosted", "k8s"}, in.Job.Labels)
}

func TestQueuedWithoutPoolStartsNothing(t *testing.T) {
	ft := &fakeJobs{}
	h := jobHandler(t, ft)
	code, out := deliver(t, h, "workflow_job", "q-hosted", jobPayload(t, "queued"))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "no runner pool takes labels [ubuntu-latest]", out["reason"])
	// Partly matching labels are not enough: every label must be the pool's.
	code, out = deliver(t, h, "workflow_job", "q-gpu", jobPayload(t, "queued", edit{"workflow_job.labels", []any{"self-hosted", "linux", "gpu"}}))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "no runner pool takes labels [self-hosted, linux, gpu]", out["reason"])
	assert.Equal(t, [2]int{0, 0}, ft.counts())

	// No pools configured at all.
	jobs, err := intake.NewWorkflowJobs(intake.WorkflowJobOptions{Temporal: ft})
	require.NoError(t, err)
	res, err := jobs.Route(context.Background(), intake.Event{Name: "workflow_job", Payload: jobPayload(t, "queued", linuxLabels)})
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, res.Status)
	assert.Equal(t, [2]int{0, 0}, ft.counts())
}

func TestRedeliveredQueuedChangesNothing(t *testing.T) {
	ft := &fakeJobs{}
	h := jobHandler(t, ft)
	body := jobPayload(t, "queued", linuxLabels)
	code, _ := deliver(t, h, "workflow_job", "q-1", body)
	require.Equal(t, http.StatusAccepted, code)
	// The same delivery again: remembered.
	code, out := deliver(t, h, "workflow_job", "q-1", body)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "duplicate delivery", out["reason"])
	assert.Equal(t, "runner-job:7310442015", out["workflow_id"])
	assert.Equal(t, [2]int{1, 0}, ft.counts())

	// Redelivered with another ID (another replica, or a restart) after the
	// job finished: Temporal refuses a second run.
	ft.startErr = serviceerror.NewWorkflowExecutionAlreadyStarted("already started", "", "run-1")
	code, out = deliver(t, h, "workflow_job", "q-2", body)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "job already handled", out["reason"])
	assert.Equal(t, "runner-job:7310442015", out["workflow_id"])
}

func TestInProgressAndCompletedSignalTheJob(t *testing.T) {
	ft := &fakeJobs{}
	h := jobHandler(t, ft)
	code, out := deliver(t, h, "workflow_job", "p-1", jobPayload(t, "in_progress", linuxLabels,
		edit{"workflow_job.runner_name", "drydock-linux-7310442015-1"}))
	require.Equal(t, http.StatusAccepted, code, out)
	assert.Equal(t, "runner-job:7310442015", out["workflow_id"])
	code, out = deliver(t, h, "workflow_job", "c-1", jobPayload(t, "completed.failure", linuxLabels,
		edit{"workflow_job.runner_name", "drydock-linux-7310442015-1"}))
	require.Equal(t, http.StatusAccepted, code, out)

	assert.Empty(t, ft.executes, "in_progress and completed never start a job")
	require.Len(t, ft.signals, 2)
	for _, s := range ft.signals {
		assert.Equal(t, runnerapi.JobWorkflowID(exampleJobID), s.ID)
		assert.Equal(t, runnerapi.SignalJobEvent, s.Signal)
		assert.Empty(t, s.RunID)
	}
	p := ft.signals[0].Event.(runnerapi.WorkflowJobEvent)
	assert.Equal(t, "in_progress", p.Action)
	assert.Equal(t, "drydock-linux-7310442015-1", p.RunnerName)
	assert.EqualValues(t, 4242, p.InstallationID)
	assert.Equal(t, "Acme", p.Org)
	c := ft.signals[1].Event.(runnerapi.WorkflowJobEvent)
	assert.Equal(t, runnerapi.WorkflowJobEvent{
		DeliveryID:     "c-1",
		Action:         "completed",
		JobID:          exampleJobID,
		RunID:          3100200300,
		Name:           "test",
		WorkflowName:   "CI",
		Owner:          "Acme",
		Repo:           "Store-Front",
		Org:            "Acme", // from "organization"
		Labels:         []string{"self-hosted", "Linux"},
		RunnerName:     "drydock-linux-7310442015-1",
		Conclusion:     "failure",
		CreatedAt:      exampleQueuedAt,
		StartedAt:      exampleQueuedAt.Add(time.Minute),
		InstallationID: 4242,
	}, c)
}

// A job that ran on one of our runners though no RunnerJob tracks it (its
// queued was lost): the runner is spent, and its pool hears so.
func TestUntrackedCompletedJobReleasesOurRunner(t *testing.T) {
	ft := &fakeJobs{signalErr: func(id string) error {
		if strings.HasPrefix(id, "runner-job:") {
			return notFound(id)
		}
		return nil
	}}
	h := jobHandler(t, ft)
	code, out := deliver(t, h, "workflow_job", "c-untracked", jobPayload(t, "completed",
		linuxLabels, edit{"workflow_job.runner_name", "drydock-linux-77-1"}))
	require.Equal(t, http.StatusAccepted, code, out)
	assert.Equal(t, "runner-pool:linux", out["workflow_id"])
	require.Len(t, ft.signals, 2)
	assert.Equal(t, runnerapi.PoolWorkflowID("linux"), ft.signals[1].ID)
	assert.Equal(t, runnerapi.SignalRelease, ft.signals[1].Signal)
	assert.Equal(t, runnerapi.ReleaseRequest{RunnerName: "drydock-linux-77-1", JobID: exampleJobID}, ft.signals[1].Event)

	// The runner's name names its pool even when the job's labels would
	// match another pool first.
	ft.signals = nil
	code, out = deliver(t, h, "workflow_job", "c-k8s-runner", jobPayload(t, "completed",
		edit{"workflow_job.labels", []any{"self-hosted"}}, edit{"workflow_job.runner_name", "drydock-k8s-78-2"}))
	require.Equal(t, http.StatusAccepted, code, out)
	assert.Equal(t, "runner-pool:k8s", out["workflow_id"])

	// The pool is not running either: nothing to do.
	ft.signalErr = notFound
	code, out = deliver(t, h, "workflow_job", "c-no-pool", jobPayload(t, "completed",
		linuxLabels, edit{"workflow_job.runner_name", "drydock-linux-79-1"}))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "no-op: job not tracked and pool linux is not running", out["reason"])
}

func TestUntrackedJobsOnOtherRunnersAreNoOps(t *testing.T) {
	ft := &fakeJobs{signalErr: notFound}
	h := jobHandler(t, ft)
	for _, tc := range []struct{ file, runner string }{
		{"in_progress", "drydock-linux-1-1"}, // only completed releases
		{"completed", "GitHub Actions 5"},    // a GitHub-hosted runner
		{"completed", ""},
	} {
		code, out := deliver(t, h, "workflow_job", "d-"+tc.file+tc.runner, jobPayload(t, tc.file, linuxLabels, edit{"workflow_job.runner_name", tc.runner}))
		assert.Equal(t, http.StatusOK, code, tc)
		assert.Equal(t, "no-op: job not tracked", out["reason"], tc)
	}
	assert.Equal(t, [2]int{0, 3}, ft.counts(), "one job signal each, no release")
}

// GitHub-hosted jobs (most of the traffic) never reach Temporal.
func TestHostedJobEventsDoNotAskTemporal(t *testing.T) {
	ft := &fakeJobs{}
	h := jobHandler(t, ft)
	for _, file := range []string{"in_progress", "queued",
		"completed", "completed.failure"} {
		code, out := deliver(t, h, "workflow_job", "h-"+file, jobPayload(t, file))
		assert.Equal(t, http.StatusOK, code, file)
		assert.Equal(t, "no runner pool takes labels [ubuntu-latest]", out["reason"], file)
	}
	assert.Equal(t, [2]int{0, 0}, ft.counts())

	// A Drydock runner's name is enough (the pool's labels may have changed
	// since the job was queued).
	code, _ := deliver(t, h, "workflow_job", "h-ours", jobPayload(t, "completed",
		edit{"workflow_job.runner_name", "drydock-k8s-5-1"}))
	assert.Equal(t, http.StatusAccepted, code)
	assert.Equal(t, [2]int{0, 1}, ft.counts())
}

func TestWaitingAndOtherActions(t *testing.T) {
	ft := &fakeJobs{}
	h := jobHandler(t, ft)
	code, out := deliver(t, h, "workflow_job", "w-1", jobPayload(t, "waiting"))
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, out["reason"], "workflow_job waiting")
	code, out = deliver(t, h, "workflow_job", "w-2", jobPayload(t, "waiting", edit{"action", "requested"}))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, `workflow_job action "requested" needs no runner`, out["reason"])
	// Skipped deliveries are not remembered: a redelivery is judged again.
	code, out = deliver(t, h, "workflow_job", "w-1", jobPayload(t, "waiting"))
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, out["reason"], "workflow_job waiting")
	assert.Equal(t, [2]int{0, 0}, ft.counts())
}

func TestInvalidJobPayloadStartsNothing(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		edits      []edit
		reason     string
	}{
		{"no job id", "queued", []edit{linuxLabels, {"workflow_job.id", nil}}, "missing workflow_job.id"},
		{"no labels", "queued", []edit{{"workflow_job.labels", []any{}}}, "missing workflow_job.labels"},
		{"blank labels", "completed", []edit{{"workflow_job.labels", []any{" "}}}, "missing workflow_job.labels"},
		{"no repository", "in_progress", []edit{linuxLabels, {"repository", nil}}, "missing repository.owner.login, repository.name"},
		{"bad repo name", "queued", []edit{linuxLabels, {"repository.name", "a b"}}, "repository.name is not a GitHub name"},
		{"no workflow_job", "queued", []edit{{"workflow_job", nil}}, "missing workflow_job"},
		{"wrong type", "queued", []edit{{"workflow_job", "x"}}, "malformed workflow_job payload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ft := &fakeJobs{}
			code, out := deliver(t, jobHandler(t, ft), "workflow_job", "bad", jobPayload(t, tc.file, tc.edits...))
			assert.Equal(t, http.StatusBadRequest, code)
			assert.Contains(t, out["reason"], tc.reason)
			assert.Equal(t, [2]int{0, 0}, ft.counts())
		})
	}
}

func TestJobTemporalErrorsAnswer503AndRedeliveryWorks(t *testing.T) {
	unavailable := serviceerror.NewUnavailable("connection refused")
	ft := &fakeJobs{startErr: unavailable}
	h := jobHandler(t, ft)
	body := jobPayload(t, "queued", linuxLabels)
	code, out := deliver(t, h, "workflow_job", "q-1", body)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.NotContains(t, out["reason"], "connection refused", "internals stay in the log")
	ft.startErr = nil
	code, _ = deliver(t, h, "workflow_job", "q-1", body)
	assert.Equal(t, http.StatusAccepted, code, "the failed delivery was not remembered")

	ft.signalErr = func(string) error { return unavailable }
	code, _ = deliver(t, h, "workflow_job", "c-1", jobPayload(t, "completed", linuxLabels))
	assert.Equal(t, http.StatusServiceUnavailable, code)

	// The job is gone and the pool cannot be reached.
	ft.signalErr = func(id string) error {
		if strings.HasPrefix(id, "runner-job:") {
			return notFound(id)
		}
		return unavailable
	}
	code, _ = deliver(t, h, "workflow_job", "c-2", jobPayload(t, "completed", linuxLabels,
		edit{"workflow_job.runner_name", "drydock-linux-1-1"}))
	assert.Equal(t, http.StatusServiceUnavailable, code)

	// A deadline exceeded is an error too, not a no-op.
	ft.signalErr = func(string) error { return context.DeadlineExceeded }
	code, _ = deliver(t, h, "workflow_job", "p-1", jobPayload(t, "in_progress", linuxLabels))
	assert.Equal(t, http.StatusServiceUnavailable, code)
}

func TestWorkflowJobOptionsValidation(t *testing.T) {
	_, err := intake.NewWorkflowJobs(intake.WorkflowJobOptions{})
	assert.ErrorContains(t, err, "Temporal is nil")
	_, err = intake.NewWorkflowJobs(intake.WorkflowJobOptions{Temporal: &fakeJobs{}, Pools: &pools.Config{Pools: []pools.Pool{{Name: "X"}}}})
	var inv *pools.InvalidError
	assert.True(t, errors.As(err, &inv), "%v", err)
}
