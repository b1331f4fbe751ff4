package intake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/drydock-dev/drydock/internal/config"
	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/testing/testenv"
	"github.com/drydock-dev/drydock/workflows"
)

var devServer *testsuite.DevServer

func TestMain(m *testing.M) { testenv.MainWithTemporal(m, &devServer) }

const querySignals = "signals"

// recordingPreview stands in for PreviewLifecycle: it records the
// pull_request signals it receives (query "signals") and completes on closed.
func recordingPreview(ctx workflow.Context, in workflows.PreviewInput) ([]workflows.PullRequestEvent, error) {
	return recordSignals(ctx, nil, workflows.SignalPullRequest, func(ev workflows.PullRequestEvent) bool { return ev.Action == "closed" })
}

// recordSignals appends the signals of signal a recording workflow receives
// to got (query "signals") until last says one is the last, and returns them.
func recordSignals[E any](ctx workflow.Context, got []E, signal string, last func(E) bool) ([]E, error) {
	if err := workflow.SetQueryHandler(ctx, querySignals, func() ([]E, error) { return got, nil }); err != nil {
		return nil, err
	}
	ch := workflow.GetSignalChannel(ctx, signal)
	for {
		var ev E
		ch.Receive(ctx, &ev)
		got = append(got, ev)
		if last(ev) {
			return got, nil
		}
	}
}

// post sends a signed delivery over real HTTP.
func postHTTP(t *testing.T, url, event, delivery string, body []byte) (int, map[string]string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/webhooks/github", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", intake.SignatureHeader([]byte(secret), body))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]string
	require.NoError(t, json.Unmarshal(raw, &out), string(raw))
	return resp.StatusCode, out
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func TestEndToEndThroughTemporal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tc := devServer.Client()
	startWorker(t, recordingPreview, workflows.PreviewLifecycleName)
	prs, err := intake.NewPullRequests(intake.PullRequestOptions{Temporal: tc, Policy: intake.PreviewPolicy{Label: "preview"}, Logger: quietLogger()})
	require.NoError(t, err)
	srv := webhookServer(t, "pull_request", prs, intake.DefaultRecentDeliveries)

	// opened: 202 quickly, and a running workflow with its search attributes.
	start := time.Now()
	code, out := postHTTP(t, srv.URL, "pull_request", "e2e-opened", payload(t, "opened"))
	elapsed := time.Since(start)
	require.Equal(t, http.StatusAccepted, code, out)
	assert.Equal(t, wantID, out["workflow_id"])
	assert.Less(t, elapsed, 2*time.Second, "GitHub gives up after 10s; signal-with-start should take milliseconds")
	t.Logf("opened answered in %s", elapsed)

	runID := requireRunningPreview(ctx, t, tc)

	// The same delivery again: nothing reaches the workflow.
	code, out = postHTTP(t, srv.URL, "pull_request", "e2e-opened", payload(t, "opened"))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "duplicate delivery", out["reason"])

	// A push: the same workflow gets the new head.
	newSHA := "0123456789abcdef0123456789abcdef01234567"
	code, _ = postHTTP(t, srv.URL, "pull_request", "e2e-sync", payload(t, "synchronize", edit{"pull_request.head.sha", newSHA}))
	require.Equal(t, http.StatusAccepted, code)
	got := previewSignals(ctx, t, tc)
	require.Len(t, got, 2, "one signal per distinct delivery")
	assert.Equal(t, "e2e-opened", got[0].DeliveryID)
	assert.Equal(t, "alice", got[0].Sender)
	assert.Equal(t, "saved-cards", got[0].HeadRef)
	assert.Equal(t, []string{"bug"}, got[0].Labels)
	assert.EqualValues(t, 1, got[0].InstallationID)
	assert.Equal(t, newSHA, got[1].HeadSHA)

	// closed: the workflow completes (no second run is started).
	code, out = postHTTP(t, srv.URL, "pull_request", "e2e-closed", payload(t, "closed"))
	require.Equal(t, http.StatusAccepted, code, out)
	var final []workflows.PullRequestEvent
	require.NoError(t, tc.GetWorkflow(ctx, wantID, runID).Get(ctx, &final))
	require.Len(t, final, 3)
	assert.Equal(t, "closed", final[2].Action)

	closedAgainThenReopened(ctx, t, tc, srv.URL, runID)
}

// previewSignals are the pull_request signals wantID's workflow received.
func previewSignals(ctx context.Context, t *testing.T, tc client.Client) []workflows.PullRequestEvent {
	t.Helper()
	v, err := tc.QueryWorkflow(ctx, wantID, "", querySignals)
	require.NoError(t, err)
	var got []workflows.PullRequestEvent
	require.NoError(t, v.Get(&got))
	return got
}

// closedAgainThenReopened follows the close of wantID's run runID through
// the webhook server at url: another closed delivery, then a reopen.
func closedAgainThenReopened(ctx context.Context, t *testing.T, tc client.Client, url, runID string) {
	t.Helper()
	// closed again (GitHub redelivering under a new ID, or a second close):
	// nothing to tear down, and nothing started.
	code, out := postHTTP(t, url, "pull_request", "e2e-closed-2", payload(t, "closed"))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "no preview to tear down", out["reason"])
	desc, err := tc.DescribeWorkflow(ctx, wantID, "")
	require.NoError(t, err)
	assert.Equal(t, runID, desc.WorkflowExecution.RunID, "still the completed run")
	assert.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, desc.Status)

	// reopened starts a fresh run for the same pull request.
	code, _ = postHTTP(t, url, "pull_request", "e2e-reopened", payload(t, "reopened"))
	require.Equal(t, http.StatusAccepted, code)
	desc, err = tc.DescribeWorkflow(ctx, wantID, "")
	require.NoError(t, err)
	assert.NotEqual(t, runID, desc.WorkflowExecution.RunID)
	assert.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, desc.Status)
	code, _ = postHTTP(t, url, "pull_request", "e2e-closed-3", payload(t, "closed"))
	require.Equal(t, http.StatusAccepted, code)
	require.NoError(t, tc.GetWorkflow(ctx, wantID, "").Get(ctx, nil))
}

// requireRunningPreview requires wantID's workflow to be running, with its
// search attributes, and findable by them; it returns the run's ID.
func requireRunningPreview(ctx context.Context, t *testing.T, tc client.Client) string {
	t.Helper()
	desc, err := tc.DescribeWorkflow(ctx, wantID, "")
	require.NoError(t, err)
	assert.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, desc.Status)
	assert.Equal(t, workflows.PreviewLifecycleName, desc.WorkflowType.Name)
	assert.Equal(t, workflows.TaskQueue, desc.TaskQueueName)
	repo, ok := desc.TypedSearchAttributes.GetKeyword(workflows.SearchAttrRepo)
	assert.True(t, ok)
	assert.Equal(t, "acme/store-front", repo)
	n, ok := desc.TypedSearchAttributes.GetInt64(workflows.SearchAttrPRNumber)
	assert.True(t, ok)
	assert.EqualValues(t, 2, n)

	// Findable the way docs/operations.md says (visibility is eventually consistent).
	require.Eventually(t, func() bool {
		resp, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
			Query: `DrydockRepo="acme/store-front" AND DrydockPRNumber=2 AND ExecutionStatus="Running"`,
		})
		return err == nil && resp.GetCount() == 1
	}, 10*time.Second, 100*time.Millisecond)
	return desc.WorkflowExecution.RunID
}

// startWorker runs wf, registered as name, on the dev server's task queue
// until the test ends.
func startWorker(t *testing.T, wf any, name string) {
	w := worker.New(devServer.Client(), workflows.TaskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(wf, workflow.RegisterOptions{Name: name})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
}

// webhookServer serves the intake, with its deliveries of event routed to
// r behind a Dedupe of the recent deliveries, until the test ends.
func webhookServer(t *testing.T, event string, r intake.Router, recent int) *httptest.Server {
	mux := intake.NewMux()
	mux.Handle(event, r)
	h, err := intake.New(intake.Options{Secret: secret, Allowed: intake.AllowEveryone(), Router: intake.Dedupe(mux, intake.NewRecentDeliveries(recent)), Logger: quietLogger()})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestTemporalUnreachableAnswers503(t *testing.T) {
	// A lazy client aimed at a port nobody listens on, as the webhook server
	// builds it (config.Temporal.DialLazy).
	ln := httptest.NewServer(http.NotFoundHandler())
	addr := ln.Listener.Addr().String()
	ln.Close()
	tc, err := config.Temporal{Address: addr, Namespace: "default"}.DialLazy(quietLogger())
	require.NoError(t, err)
	defer tc.Close()
	prs, err := intake.NewPullRequests(intake.PullRequestOptions{Temporal: tc, Policy: intake.PreviewPolicy{Label: "preview"}, Timeout: time.Second, Logger: quietLogger()})
	require.NoError(t, err)
	srv := webhookServer(t, "pull_request", prs, 10)

	for _, file := range []string{"opened", "closed"} {
		start := time.Now()
		code, out := postHTTP(t, srv.URL, "pull_request", "unreachable-"+file, payload(t, file))
		assert.Equal(t, http.StatusServiceUnavailable, code, out)
		assert.Less(t, time.Since(start), 5*time.Second, "answered within GitHub's 10s")
	}
}
