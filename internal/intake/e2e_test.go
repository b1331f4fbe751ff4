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
	var got []workflows.PullRequestEvent
	if err := workflow.SetQueryHandler(ctx, querySignals, func() ([]workflows.PullRequestEvent, error) { return got, nil }); err != nil {
		return nil, err
	}
	ch := workflow.GetSignalChannel(ctx, workflows.SignalPullRequest)
	for {
		var ev workflows.PullRequestEvent
		ch.Receive(ctx, &ev)
		got = append(got, ev)
		if ev.Action == "closed" {
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

	w := worker.New(tc, workflows.TaskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(recordingPreview, workflow.RegisterOptions{Name: workflows.PreviewLifecycleName})
	require.NoError(t, w.Start())
	defer w.Stop()

	prs, err := intake.NewPullRequests(intake.PullRequestOptions{Temporal: tc, Policy: intake.PreviewPolicy{Label: "preview"}, Logger: quietLogger()})
	require.NoError(t, err)
	mux := intake.NewMux()
	mux.Handle("pull_request", prs)
	h, err := intake.New(intake.Options{Secret: secret, Allowed: intake.AllowEveryone(), Router: intake.Dedupe(mux, intake.NewRecentDeliveries(intake.DefaultRecentDeliveries)), Logger: quietLogger()})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	signals := func() []workflows.PullRequestEvent {
		t.Helper()
		v, err := tc.QueryWorkflow(ctx, wantID, "", querySignals)
		require.NoError(t, err)
		var got []workflows.PullRequestEvent
		require.NoError(t, v.Get(&got))
		return got
	}

	// opened: 202 quickly, and a running workflow with its search attributes.
	start := time.Now()
	code, out := postHTTP(t, srv.URL, "pull_request", "e2e-opened", payload(t, "opened"))
	elapsed := time.Since(start)
	require.Equal(t, http.StatusAccepted, code, out)
	assert.Equal(t, wantID, out["workflow_id"])
	assert.Less(t, elapsed, 2*time.Second, "GitHub gives up after 10s; signal-with-start should take milliseconds")
	t.Logf("opened answered in %s", elapsed)

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
	runID := desc.WorkflowExecution.RunID

	// Findable the way docs/operations.md says (visibility is eventually consistent).
	require.Eventually(t, func() bool {
		resp, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
			Query: `DrydockRepo="acme/store-front" AND DrydockPRNumber=2 AND ExecutionStatus="Running"`,
		})
		return err == nil && resp.GetCount() == 1
	}, 10*time.Second, 100*time.Millisecond)

	// The same delivery again: nothing reaches the workflow.
	code, out = postHTTP(t, srv.URL, "pull_request", "e2e-opened", payload(t, "opened"))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "duplicate delivery", out["reason"])

	// A push: the same workflow gets the new head.
	newSHA := "0123456789abcdef0123456789abcdef01234567"
	code, _ = postHTTP(t, srv.URL, "pull_request", "e2e-sync", payload(t, "synchronize", edit{"pull_request.head.sha", newSHA}))
	require.Equal(t, http.StatusAccepted, code)
	got := signals()
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

	// closed again (GitHub redelivering under a new ID, or a second close):
	// nothing to tear down, and nothing started.
	code, out = postHTTP(t, srv.URL, "pull_request", "e2e-closed-2", payload(t, "closed"))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "no preview to tear down", out["reason"])
	desc, err = tc.DescribeWorkflow(ctx, wantID, "")
	require.NoError(t, err)
	assert.Equal(t, runID, desc.WorkflowExecution.RunID, "still the completed run")
	assert.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, desc.Status)

	// reopened starts a fresh run for the same pull request.
	code, _ = postHTTP(t, srv.URL, "pull_request", "e2e-reopened", payload(t, "reopened"))
	require.Equal(t, http.StatusAccepted, code)
	desc, err = tc.DescribeWorkflow(ctx, wantID, "")
	require.NoError(t, err)
	assert.NotEqual(t, runID, desc.WorkflowExecution.RunID)
	assert.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, desc.Status)
	code, _ = postHTTP(t, srv.URL, "pull_request", "e2e-closed-3", payload(t, "closed"))
	require.Equal(t, http.StatusAccepted, code)
	require.NoError(t, tc.GetWorkflow(ctx, wantID, "").Get(ctx, nil))
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
	mux := intake.NewMux()
	mux.Handle("pull_request", prs)
	h, err := intake.New(intake.Options{Secret: secret, Allowed: intake.AllowEveryone(), Router: intake.Dedupe(mux, intake.NewRecentDeliveries(10)), Logger: quietLogger()})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	for _, file := range []string{"opened", "closed"} {
		start := time.Now()
		code, out := postHTTP(t, srv.URL, "pull_request", "unreachable-"+file, payload(t, file))
		assert.Equal(t, http.StatusServiceUnavailable, code, out)
		assert.Less(t, time.Since(start), 5*time.Second, "answered within GitHub's 10s")
	}
}
