package intake_test

import (
	"context"
	"encoding/json"
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

	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/pools"
	"github.com/drydock-dev/drydock/internal/testenv"
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

// testPools: linux takes [self-hosted, linux, x64] jobs, k8s the fixtures'
// [self-hosted, k8s] ones.
func testPools(t *testing.T) *pools.Config {
	t.Helper()
	c, err := pools.Parse([]byte(`
pools:
  - {name: linux, labels: [self-hosted, linux, x64], scope: {org: Octocoders}}
  - {name: k8s, labels: [self-hosted, k8s], scope: {repo: lineville/elastic-machines-testing}}
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
	h, err := intake.New(intake.Options{Secret: secret, Router: intake.Dedupe(mux, intake.NewRecentDeliveries(100)), Logger: quietLogger()})
	require.NoError(t, err)
	return h
}

// jobPayload reads a workflow_job fixture and applies edits (dotted paths;
// nil deletes).
func jobPayload(t *testing.T, name string, edits ...edit) []byte {
	t.Helper()
	var doc map[string]any
	require.NoError(t, json.Unmarshal(testenv.Fixture(t, "workflow_job/"+name), &doc))
	for _, e := range edits {
		keys := strings.Split(e.path, ".")
		m := doc
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]any)
			require.True(t, ok, "fixture %s has no object at %s", name, e.path)
			m = next
		}
		if last := keys[len(keys)-1]; e.value == nil {
			delete(m, last)
		} else {
			m[last] = e.value
		}
	}
	b, err := json.Marshal(doc)
	require.NoError(t, err)
	return b
}

var linuxLabels = edit{"workflow_job.labels", []any{"self-hosted", "Linux"}}

const fixtureJobID = 289782451

func TestQueuedJobStartsRunnerJob(t *testing.T) {
	ft := &fakeJobs{}
	h := jobHandler(t, ft)
	code, out := deliver(t, h, "workflow_job", "q-1", jobPayload(t, "queued.payload.json", linuxLabels))
	require.Equal(t, http.StatusAccepted, code, out)
	assert.Equal(t, "runner-job:289782451", out["workflow_id"])
	assert.Equal(t, "runner requested from pool linux", out["reason"])

	require.Len(t, ft.executes, 1)
	call := ft.executes[0]
	assert.Equal(t, runnerapi.JobWorkflowID(fixtureJobID), call.Opts.ID)
	assert.Equal(t, workflows.TaskQueue, call.Opts.TaskQueue)
	assert.Equal(t, enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE, call.Opts.WorkflowIDReusePolicy)
	assert.Equal(t, enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING, call.Opts.WorkflowIDConflictPolicy)
	assert.True(t, call.Opts.WorkflowExecutionErrorWhenAlreadyStarted, "a finished job must be told apart")
	sa := call.Opts.TypedSearchAttributes
	pool, _ := sa.GetKeyword(workflows.SearchAttrPool)
	jobID, _ := sa.GetInt64(workflows.SearchAttrJobID)
	repo, _ := sa.GetKeyword(workflows.SearchAttrRepo)
	assert.Equal(t, "linux", pool)
	assert.EqualValues(t, fixtureJobID, jobID)
	assert.Equal(t, "octocoders/hello-world", repo)
	assert.NotEmpty(t, call.Opts.StaticSummary)
	assert.Equal(t, runnerapi.RunnerJobName, call.Workflow)
	require.Len(t, call.Args, 1)
	assert.Equal(t, runnerapi.RunnerJobInput{Pool: "linux", Job: runnerapi.WorkflowJobEvent{
		DeliveryID:     "q-1",
		Action:         "queued",
		JobID:          fixtureJobID,
		RunID:          2202229078,
		Name:           "update",
		WorkflowName:   "CodeQL",
		Owner:          "Octocoders",
		Repo:           "Hello-World",
		Org:            "Octocoders", // the owner is an Organization
		Labels:         []string{"self-hosted", "Linux"},
		RunnerName:     "GitHub Actions 5",
		CreatedAt:      time.Date(2021, 9, 13, 2, 21, 13, 0, time.UTC),
		StartedAt:      time.Date(2021, 9, 13, 2, 21, 13, 0, time.UTC),
		InstallationID: 3456996,
	}}, call.Args[0])
	assert.Empty(t, ft.signals)
}

func TestQueuedForAUsersRepository(t *testing.T) {
	ft := &fakeJobs{}
	code, out := deliver(t, jobHandler(t, ft), "workflow_job", "q-k8s", jobPayload(t, "queued.with-deployment.payload.json"))
	require.Equal(t, http.StatusAccepted, code, out)
	require.Len(t, ft.executes, 1)
	in := ft.executes[0].Args[0].(runnerapi.RunnerJobInput)
	assert.Equal(t, "k8s", in.Pool)
	assert.Equal(t, "lineville", in.Job.Owner)
	assert.Empty(t, in.Job.Org, "a user's repository has no organization")
	assert.Empty(t, in.Job.RunnerName)
	assert.Equal(t, []string{"self-hosted", "k8s"}, in.Job.Labels)
}

func TestQueuedWithoutPoolStartsNothing(t *testing.T) {
	ft := &fakeJobs{}
	h := jobHandler(t, ft)
	code, out := deliver(t, h, "workflow_job", "q-hosted", jobPayload(t, "queued.payload.json"))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "no runner pool takes labels [ubuntu-latest]", out["reason"])
	// Partly matching labels are not enough: every label must be the pool's.
	code, out = deliver(t, h, "workflow_job", "q-gpu", jobPayload(t, "queued.payload.json", edit{"workflow_job.labels", []any{"self-hosted", "linux", "gpu"}}))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "no runner pool takes labels [self-hosted, linux, gpu]", out["reason"])
	assert.Equal(t, [2]int{0, 0}, ft.counts())

	// No pools configured at all.
	jobs, err := intake.NewWorkflowJobs(intake.WorkflowJobOptions{Temporal: ft})
	require.NoError(t, err)
	res, err := jobs.Route(context.Background(), intake.Event{Name: "workflow_job", Payload: jobPayload(t, "queued.payload.json", linuxLabels)})
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, res.Status)
	assert.Equal(t, [2]int{0, 0}, ft.counts())
}

func TestRedeliveredQueuedChangesNothing(t *testing.T) {
	ft := &fakeJobs{}
	h := jobHandler(t, ft)
	body := jobPayload(t, "queued.payload.json", linuxLabels)
	code, _ := deliver(t, h, "workflow_job", "q-1", body)
	require.Equal(t, http.StatusAccepted, code)
	// The same delivery again: remembered.
	code, out := deliver(t, h, "workflow_job", "q-1", body)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "duplicate delivery", out["reason"])
	assert.Equal(t, "runner-job:289782451", out["workflow_id"])
	assert.Equal(t, [2]int{1, 0}, ft.counts())

	// Redelivered with another ID (another replica, or a restart) after the
	// job finished: Temporal refuses a second run.
	ft.startErr = serviceerror.NewWorkflowExecutionAlreadyStarted("already started", "", "run-1")
	code, out = deliver(t, h, "workflow_job", "q-2", body)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "job already handled", out["reason"])
	assert.Equal(t, "runner-job:289782451", out["workflow_id"])
}

func TestInProgressAndCompletedSignalTheJob(t *testing.T) {
	ft := &fakeJobs{}
	h := jobHandler(t, ft)
	code, out := deliver(t, h, "workflow_job", "p-1", jobPayload(t, "in_progress.payload.json", linuxLabels,
		edit{"workflow_job.runner_name", "drydock-linux-289782451-1"}))
	require.Equal(t, http.StatusAccepted, code, out)
	assert.Equal(t, "runner-job:289782451", out["workflow_id"])
	code, out = deliver(t, h, "workflow_job", "c-1", jobPayload(t, "completed.failure.with-organization.payload.json", linuxLabels,
		edit{"workflow_job.runner_name", "drydock-linux-289782451-1"}))
	require.Equal(t, http.StatusAccepted, code, out)

	assert.Empty(t, ft.executes, "in_progress and completed never start a job")
	require.Len(t, ft.signals, 2)
	for _, s := range ft.signals {
		assert.Equal(t, runnerapi.JobWorkflowID(fixtureJobID), s.ID)
		assert.Equal(t, runnerapi.SignalJobEvent, s.Signal)
		assert.Empty(t, s.RunID)
	}
	p := ft.signals[0].Event.(runnerapi.WorkflowJobEvent)
	assert.Equal(t, "in_progress", p.Action)
	assert.Equal(t, "drydock-linux-289782451-1", p.RunnerName)
	assert.EqualValues(t, 1, p.InstallationID)
	assert.Equal(t, "Octocoders", p.Org)
	c := ft.signals[1].Event.(runnerapi.WorkflowJobEvent)
	assert.Equal(t, runnerapi.WorkflowJobEvent{
		DeliveryID:   "c-1",
		Action:       "completed",
		JobID:        fixtureJobID,
		RunID:        2202229078,
		Name:         "linters",
		WorkflowName: "CodeQL",
		Owner:        "Octocoders",
		Repo:         "Hello-World",
		Org:          "Octocoders", // from "organization"
		Labels:       []string{"self-hosted", "Linux"},
		RunnerName:   "drydock-linux-289782451-1",
		Conclusion:   "failure",
		CreatedAt:    time.Date(2021, 8, 5, 10, 33, 58, 0, time.UTC),
		StartedAt:    time.Date(2021, 8, 5, 10, 34, 58, 0, time.UTC),
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
	code, out := deliver(t, h, "workflow_job", "c-untracked", jobPayload(t, "completed.success.with-organization.payload.json",
		linuxLabels, edit{"workflow_job.runner_name", "drydock-linux-77-1"}))
	require.Equal(t, http.StatusAccepted, code, out)
	assert.Equal(t, "runner-pool:linux", out["workflow_id"])
	require.Len(t, ft.signals, 2)
	assert.Equal(t, runnerapi.PoolWorkflowID("linux"), ft.signals[1].ID)
	assert.Equal(t, runnerapi.SignalRelease, ft.signals[1].Signal)
	assert.Equal(t, runnerapi.ReleaseRequest{RunnerName: "drydock-linux-77-1", JobID: fixtureJobID}, ft.signals[1].Event)

	// The runner's name names its pool even when the job's labels would
	// match another pool first.
	ft.signals = nil
	code, out = deliver(t, h, "workflow_job", "c-k8s-runner", jobPayload(t, "completed.success.with-organization.payload.json",
		edit{"workflow_job.labels", []any{"self-hosted"}}, edit{"workflow_job.runner_name", "drydock-k8s-78-2"}))
	require.Equal(t, http.StatusAccepted, code, out)
	assert.Equal(t, "runner-pool:k8s", out["workflow_id"])

	// The pool is not running either: nothing to do.
	ft.signalErr = notFound
	code, out = deliver(t, h, "workflow_job", "c-no-pool", jobPayload(t, "completed.success.with-organization.payload.json",
		linuxLabels, edit{"workflow_job.runner_name", "drydock-linux-79-1"}))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "no-op: job not tracked and pool linux is not running", out["reason"])
}

func TestUntrackedJobsOnOtherRunnersAreNoOps(t *testing.T) {
	ft := &fakeJobs{signalErr: notFound}
	h := jobHandler(t, ft)
	for _, tc := range []struct{ file, runner string }{
		{"in_progress.payload.json", "drydock-linux-1-1"}, // only completed releases
		{"completed.success.with-organization.payload.json", "GitHub Actions 5"},
		{"completed.success.with-organization.payload.json", ""},
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
	for _, file := range []string{"in_progress.payload.json", "in_progress.with-queued-steps.payload.json",
		"completed.success.with-organization.payload.json", "completed.failure.with-organization.payload.json"} {
		code, out := deliver(t, h, "workflow_job", "h-"+file, jobPayload(t, file))
		assert.Equal(t, http.StatusOK, code, file)
		assert.Equal(t, "no runner pool takes labels [ubuntu-latest]", out["reason"], file)
	}
	assert.Equal(t, [2]int{0, 0}, ft.counts())

	// A Drydock runner's name is enough (the pool's labels may have changed
	// since the job was queued).
	code, _ := deliver(t, h, "workflow_job", "h-ours", jobPayload(t, "completed.success.with-organization.payload.json",
		edit{"workflow_job.runner_name", "drydock-k8s-5-1"}))
	assert.Equal(t, http.StatusAccepted, code)
	assert.Equal(t, [2]int{0, 1}, ft.counts())
}

func TestWaitingAndOtherActions(t *testing.T) {
	ft := &fakeJobs{}
	h := jobHandler(t, ft)
	code, out := deliver(t, h, "workflow_job", "w-1", jobPayload(t, "waiting.payload.json"))
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, out["reason"], "workflow_job waiting")
	code, out = deliver(t, h, "workflow_job", "w-2", jobPayload(t, "waiting.payload.json", edit{"action", "requested"}))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, `workflow_job action "requested" needs no runner`, out["reason"])
	// Skipped deliveries are not remembered: a redelivery is judged again.
	code, out = deliver(t, h, "workflow_job", "w-1", jobPayload(t, "waiting.payload.json"))
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
		{"no job id", "queued.payload.json", []edit{linuxLabels, {"workflow_job.id", nil}}, "missing workflow_job.id"},
		{"no labels", "queued.payload.json", []edit{{"workflow_job.labels", []any{}}}, "missing workflow_job.labels"},
		{"blank labels", "completed.success.with-organization.payload.json", []edit{{"workflow_job.labels", []any{" "}}}, "missing workflow_job.labels"},
		{"no repository", "in_progress.payload.json", []edit{linuxLabels, {"repository", nil}}, "missing repository.owner.login, repository.name"},
		{"bad repo name", "queued.payload.json", []edit{linuxLabels, {"repository.name", "a b"}}, "repository.name is not a GitHub name"},
		{"no workflow_job", "queued.payload.json", []edit{{"workflow_job", nil}}, "missing workflow_job"},
		{"wrong type", "queued.payload.json", []edit{{"workflow_job", "x"}}, "malformed workflow_job payload"},
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
	body := jobPayload(t, "queued.payload.json", linuxLabels)
	code, out := deliver(t, h, "workflow_job", "q-1", body)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.NotContains(t, out["reason"], "connection refused", "internals stay in the log")
	ft.startErr = nil
	code, _ = deliver(t, h, "workflow_job", "q-1", body)
	assert.Equal(t, http.StatusAccepted, code, "the failed delivery was not remembered")

	ft.signalErr = func(string) error { return unavailable }
	code, _ = deliver(t, h, "workflow_job", "c-1", jobPayload(t, "completed.success.with-organization.payload.json", linuxLabels))
	assert.Equal(t, http.StatusServiceUnavailable, code)

	// The job is gone and the pool cannot be reached.
	ft.signalErr = func(id string) error {
		if strings.HasPrefix(id, "runner-job:") {
			return notFound(id)
		}
		return unavailable
	}
	code, _ = deliver(t, h, "workflow_job", "c-2", jobPayload(t, "completed.success.with-organization.payload.json", linuxLabels,
		edit{"workflow_job.runner_name", "drydock-linux-1-1"}))
	assert.Equal(t, http.StatusServiceUnavailable, code)

	// A deadline exceeded is an error too, not a no-op.
	ft.signalErr = func(string) error { return context.DeadlineExceeded }
	code, _ = deliver(t, h, "workflow_job", "p-1", jobPayload(t, "in_progress.payload.json", linuxLabels))
	assert.Equal(t, http.StatusServiceUnavailable, code)
}

func TestWorkflowJobOptionsValidation(t *testing.T) {
	_, err := intake.NewWorkflowJobs(intake.WorkflowJobOptions{})
	assert.ErrorContains(t, err, "Temporal is nil")
	_, err = intake.NewWorkflowJobs(intake.WorkflowJobOptions{Temporal: &fakeJobs{}, Pools: &pools.Config{Pools: []pools.Pool{{Name: "X"}}}})
	var inv *pools.InvalidError
	assert.True(t, errors.As(err, &inv), "%v", err)
}
