package intake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/internal/testenv"
	"github.com/drydock-dev/drydock/workflows"
)

// fakeTemporal records what the router asks of Temporal.
type fakeTemporal struct {
	mu      sync.Mutex
	starts  []startCall
	signals []signalCall
	// Errors to return; nil means accept.
	startErr, signalErr error
}

type startCall struct {
	ID, Signal string
	Event      any
	Opts       client.StartWorkflowOptions
	Workflow   any
	Args       []any
}

type signalCall struct {
	ID, RunID, Signal string
	Event             any
}

type fakeRun struct {
	client.WorkflowRun
	id string
}

func (r fakeRun) GetID() string    { return r.id }
func (r fakeRun) GetRunID() string { return "run-1" }

func (f *fakeTemporal) SignalWithStartWorkflow(_ context.Context, id, signal string, arg any,
	opts client.StartWorkflowOptions, wf any, args ...any) (client.WorkflowRun, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.startErr != nil {
		return nil, f.startErr
	}
	f.starts = append(f.starts, startCall{ID: id, Signal: signal, Event: arg, Opts: opts, Workflow: wf, Args: args})
	return fakeRun{id: id}, nil
}

func (f *fakeTemporal) SignalWorkflow(_ context.Context, id, runID, signal string, arg any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.signalErr != nil {
		return f.signalErr
	}
	f.signals = append(f.signals, signalCall{ID: id, RunID: runID, Signal: signal, Event: arg})
	return nil
}

func (f *fakeTemporal) calls() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.starts), len(f.signals)
}

// prHandler is the production composition: signature check, Dedupe, Mux,
// PullRequests.
func prHandler(t *testing.T, tc intake.Temporal, policy intake.PreviewPolicy) *intake.Handler {
	t.Helper()
	prs, err := intake.NewPullRequests(intake.PullRequestOptions{Temporal: tc, Policy: policy})
	require.NoError(t, err)
	mux := intake.NewMux()
	mux.Handle("pull_request", prs)
	h, err := intake.New(intake.Options{Secret: secret, Router: intake.Dedupe(mux, intake.NewRecentDeliveries(100))})
	require.NoError(t, err)
	return h
}

// deliver posts a signed delivery; an empty delivery ID sends no header.
func deliver(t *testing.T, h http.Handler, event, delivery string, body []byte) (int, map[string]string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/webhooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	if delivery != "" {
		req.Header.Set("X-GitHub-Delivery", delivery)
	}
	req.Header.Set("X-Hub-Signature-256", intake.SignatureHeader([]byte(secret), body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]string
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out), rec.Body.String())
	return rec.Code, out
}

// edit is a change to a fixture: a dotted path and its new value (nil
// deletes the key).
type edit struct {
	path  string
	value any
}

// payload reads a pull_request fixture and applies edits.
func payload(t *testing.T, name string, edits ...edit) []byte {
	t.Helper()
	raw := testenv.Fixture(t, "pull_request/"+name)
	if len(edits) == 0 {
		return raw
	}
	var doc map[string]any
	require.NoError(t, json.Unmarshal(raw, &doc))
	for _, e := range edits {
		keys := strings.Split(e.path, ".")
		m := doc
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]any)
			require.True(t, ok, "fixture %s has no object at %s", name, e.path)
			m = next
		}
		last := keys[len(keys)-1]
		if e.value == nil {
			delete(m, last)
		} else {
			m[last] = e.value
		}
	}
	b, err := json.Marshal(doc)
	require.NoError(t, err)
	return b
}

func labels(names ...string) []any {
	out := make([]any, len(names))
	for i, n := range names {
		out[i] = map[string]any{"id": 1000 + i, "name": n, "color": "ededed", "default": false}
	}
	return out
}

// fork makes the fixture's head repository a fork.
var fork = []edit{
	{"pull_request.head.repo.full_name", "mallory/Hello-World"},
	{"pull_request.head.repo.clone_url", "https://github.com/mallory/Hello-World.git"},
	{"pull_request.head.label", "mallory:changes"},
}

const wantID = "preview:codertocat/hello-world:2"

func TestOpenedSignalsWithStart(t *testing.T) {
	tc := &fakeTemporal{}
	h := prHandler(t, tc, intake.PreviewPolicy{Label: "preview"})
	code, out := deliver(t, h, "pull_request", "d-open", payload(t, "opened.payload.json"))
	assert.Equal(t, http.StatusAccepted, code, out)
	assert.Equal(t, wantID, out["workflow_id"])
	assert.Equal(t, "preview requested (opened)", out["reason"])

	require.Len(t, tc.starts, 1)
	assert.Empty(t, tc.signals)
	s := tc.starts[0]
	assert.Equal(t, wantID, s.ID)
	assert.Equal(t, wantID, s.Opts.ID)
	assert.Equal(t, workflows.TaskQueue, s.Opts.TaskQueue)
	assert.Equal(t, workflows.SignalPullRequest, s.Signal)
	assert.Equal(t, workflows.PreviewLifecycleName, s.Workflow)
	assert.Equal(t, []any{workflows.PreviewInput{Owner: "Codertocat", Repo: "Hello-World", Number: 2}}, s.Args)
	repo, ok := s.Opts.TypedSearchAttributes.GetKeyword(workflows.SearchAttrRepo)
	assert.True(t, ok)
	assert.Equal(t, "codertocat/hello-world", repo)
	n, ok := s.Opts.TypedSearchAttributes.GetInt64(workflows.SearchAttrPRNumber)
	assert.True(t, ok)
	assert.EqualValues(t, 2, n)
	assert.Equal(t, 2, s.Opts.TypedSearchAttributes.Size())

	assert.Equal(t, workflows.PullRequestEvent{
		DeliveryID:     "d-open",
		Action:         "opened",
		Owner:          "Codertocat",
		Repo:           "Hello-World",
		Number:         2,
		Title:          "Update the README with new information.",
		HTMLURL:        "https://github.com/Codertocat/Hello-World/pull/2",
		HeadSHA:        "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
		HeadRef:        "changes",
		BaseRef:        "master",
		CloneURL:       "https://github.com/Codertocat/Hello-World.git",
		Fork:           false,
		Draft:          false,
		Merged:         false,
		Labels:         []string{"bug"},
		Sender:         "Codertocat",
		InstallationID: 1,
	}, s.Event, "the workflow gets a typed event, not the raw payload")
}

func TestDeployActionsSignalWithStart(t *testing.T) {
	for _, tc := range []struct{ file, action string }{
		{"synchronize.payload.json", "synchronize"},
		{"reopened.payload.json", "reopened"},
		{"ready_for_review.with-installation.payload.json", "ready_for_review"},
		{"opened.with-organization.payload.json", "opened"},
		{"opened.with-null-body.json", "opened"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			ft := &fakeTemporal{}
			h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
			code, out := deliver(t, h, "pull_request", "d-"+tc.action, payload(t, tc.file))
			assert.Equal(t, http.StatusAccepted, code, out)
			require.Len(t, ft.starts, 1)
			assert.Empty(t, ft.signals)
			ev := ft.starts[0].Event.(workflows.PullRequestEvent)
			assert.Equal(t, tc.action, ev.Action)
			assert.Equal(t, "d-"+tc.action, ev.DeliveryID)
			assert.Equal(t, ft.starts[0].ID, out["workflow_id"])
			assert.Equal(t, workflows.PreviewWorkflowID(ev.Owner, ev.Repo, ev.Number), ft.starts[0].ID)
			assert.NotEmpty(t, ev.HeadSHA)
		})
	}
}

func TestSynchronizeCarriesTheNewHead(t *testing.T) {
	ft := &fakeTemporal{}
	h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
	newSHA := strings.Repeat("ab", 20)
	code, _ := deliver(t, h, "pull_request", "d-sync", payload(t, "synchronize.payload.json", edit{"pull_request.head.sha", newSHA}))
	assert.Equal(t, http.StatusAccepted, code)
	require.Len(t, ft.starts, 1)
	assert.Equal(t, wantID, ft.starts[0].ID)
	assert.Equal(t, newSHA, ft.starts[0].Event.(workflows.PullRequestEvent).HeadSHA)
}

func TestClosedOnlySignals(t *testing.T) {
	ft := &fakeTemporal{}
	h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
	code, out := deliver(t, h, "pull_request", "d-close", payload(t, "closed.payload.json", edit{"pull_request.merged", true}))
	assert.Equal(t, http.StatusAccepted, code, out)
	assert.Equal(t, "teardown requested (closed)", out["reason"])
	assert.Equal(t, wantID, out["workflow_id"])
	assert.Empty(t, ft.starts)
	require.Len(t, ft.signals, 1)
	s := ft.signals[0]
	assert.Equal(t, wantID, s.ID)
	assert.Empty(t, s.RunID, "the current run")
	assert.Equal(t, workflows.SignalPullRequest, s.Signal)
	ev := s.Event.(workflows.PullRequestEvent)
	assert.Equal(t, "closed", ev.Action)
	assert.True(t, ev.Merged)
	assert.Equal(t, "d-close", ev.DeliveryID)
}

func TestClosedWithoutWorkflowStartsNothing(t *testing.T) {
	for _, err := range []error{
		serviceerror.NewNotFound("workflow not found for ID: " + wantID),
		serviceerror.NewNotFound("workflow execution already completed"),
	} {
		ft := &fakeTemporal{signalErr: err}
		h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
		code, out := deliver(t, h, "pull_request", "d-close", payload(t, "closed.payload.json"))
		assert.Equal(t, http.StatusOK, code)
		assert.Equal(t, "no preview to tear down", out["reason"])
		starts, _ := ft.calls()
		assert.Zero(t, starts)
	}
}

func TestClosedOfADeletedForkStillTearsDown(t *testing.T) {
	// GitHub sends head.repo null once the fork is deleted; the identity is
	// all a teardown needs.
	ft := &fakeTemporal{}
	h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview", Repos: []string{"other/repo"}})
	code, out := deliver(t, h, "pull_request", "d-close", payload(t, "closed.payload.json", edit{"pull_request.head.repo", nil}))
	assert.Equal(t, http.StatusAccepted, code, out)
	require.Len(t, ft.signals, 1)
	assert.True(t, ft.signals[0].Event.(workflows.PullRequestEvent).Fork)
}

func TestOptInLabelMode(t *testing.T) {
	policy := intake.PreviewPolicy{Label: "preview", RequireLabel: true}
	withLabel := []edit{{"label.name", "Preview"}, {"pull_request.labels", labels("bug", "Preview")}}

	t.Run("opened without the label is skipped", func(t *testing.T) {
		ft := &fakeTemporal{}
		code, out := deliver(t, prHandler(t, ft, policy), "pull_request", "d-1", payload(t, "opened.payload.json"))
		assert.Equal(t, http.StatusOK, code)
		assert.Contains(t, out["reason"], `without the "preview" label`)
		assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
	})
	t.Run("opened with the label starts", func(t *testing.T) {
		ft := &fakeTemporal{}
		code, _ := deliver(t, prHandler(t, ft, policy), "pull_request", "d-1",
			payload(t, "opened.payload.json", edit{"pull_request.labels", labels("preview")}))
		assert.Equal(t, http.StatusAccepted, code)
		assert.Equal(t, [2]int{1, 0}, pair(ft.calls()))
	})
	t.Run("labeled with the label starts", func(t *testing.T) {
		ft := &fakeTemporal{}
		code, out := deliver(t, prHandler(t, ft, policy), "pull_request", "d-1", payload(t, "labeled.payload.json", withLabel...))
		assert.Equal(t, http.StatusAccepted, code, out)
		require.Len(t, ft.starts, 1)
		ev := ft.starts[0].Event.(workflows.PullRequestEvent)
		assert.Equal(t, "labeled", ev.Action)
		assert.Equal(t, []string{"bug", "Preview"}, ev.Labels)
	})
	t.Run("labeled with another label does nothing", func(t *testing.T) {
		ft := &fakeTemporal{}
		code, out := deliver(t, prHandler(t, ft, policy), "pull_request", "d-1", payload(t, "labeled.payload.json"))
		assert.Equal(t, http.StatusOK, code)
		assert.Contains(t, out["reason"], `"labeled" does not affect previews`)
		assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
	})
	t.Run("unlabeled of the label only signals", func(t *testing.T) {
		ft := &fakeTemporal{}
		code, out := deliver(t, prHandler(t, ft, policy), "pull_request", "d-1",
			payload(t, "unlabeled.payload.json", edit{"label.name", "preview"}, edit{"pull_request.labels", labels("bug")}))
		assert.Equal(t, http.StatusAccepted, code, out)
		assert.Equal(t, "teardown requested (unlabeled)", out["reason"])
		assert.Equal(t, [2]int{0, 1}, pair(ft.calls()))
	})
	t.Run("unlabeled of the label without a preview starts nothing", func(t *testing.T) {
		ft := &fakeTemporal{signalErr: serviceerror.NewNotFound("not found")}
		code, out := deliver(t, prHandler(t, ft, policy), "pull_request", "d-1",
			payload(t, "unlabeled.payload.json", edit{"label.name", "preview"}))
		assert.Equal(t, http.StatusOK, code)
		assert.Equal(t, "no preview to tear down", out["reason"])
		assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
	})
	t.Run("unlabeled of another label does nothing", func(t *testing.T) {
		ft := &fakeTemporal{}
		code, _ := deliver(t, prHandler(t, ft, policy), "pull_request", "d-1", payload(t, "unlabeled.payload.json"))
		assert.Equal(t, http.StatusOK, code)
		assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
	})
	t.Run("labeled a closed pull request starts nothing", func(t *testing.T) {
		ft := &fakeTemporal{}
		code, out := deliver(t, prHandler(t, ft, policy), "pull_request", "d-1",
			payload(t, "labeled.payload.json", append(withLabel, edit{"pull_request.state", "closed"})...))
		assert.Equal(t, http.StatusOK, code)
		assert.Contains(t, out["reason"], "pull request is closed")
		assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
	})
}

func TestLabelsOutsideOptInModeDoNothingForSameRepoPRs(t *testing.T) {
	ft := &fakeTemporal{}
	h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
	for i, file := range []string{"labeled.payload.json", "unlabeled.payload.json"} {
		code, _ := deliver(t, h, "pull_request", "d-"+file, payload(t, file, edit{"label.name", "preview"}))
		assert.Equal(t, http.StatusOK, code, i)
	}
	assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
}

func TestForkPolicy(t *testing.T) {
	t.Run("fork without the label is skipped", func(t *testing.T) {
		ft := &fakeTemporal{}
		h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
		for _, file := range []string{"opened.payload.json", "synchronize.payload.json", "reopened.payload.json"} {
			code, out := deliver(t, h, "pull_request", "d-"+file, payload(t, file, fork...))
			assert.Equal(t, http.StatusOK, code, file)
			assert.Contains(t, out["reason"], `fork without the "preview" label`, file)
		}
		assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
	})
	t.Run("fork with the label starts", func(t *testing.T) {
		ft := &fakeTemporal{}
		h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
		code, out := deliver(t, h, "pull_request", "d-1", payload(t, "opened.payload.json",
			append(fork, edit{"pull_request.labels", labels("PREVIEW")})...))
		assert.Equal(t, http.StatusAccepted, code, out)
		require.Len(t, ft.starts, 1)
		ev := ft.starts[0].Event.(workflows.PullRequestEvent)
		assert.True(t, ev.Fork)
		assert.Equal(t, "https://github.com/mallory/Hello-World.git", ev.CloneURL)
		assert.Equal(t, "Codertocat", ev.Owner, "the preview belongs to the base repository")
		assert.Equal(t, wantID, ft.starts[0].ID)
	})
	t.Run("a maintainer labelling a fork starts it, unlabelling tears it down", func(t *testing.T) {
		ft := &fakeTemporal{}
		h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
		code, _ := deliver(t, h, "pull_request", "d-1", payload(t, "labeled.payload.json",
			append(fork, edit{"label.name", "preview"}, edit{"pull_request.labels", labels("preview")})...))
		assert.Equal(t, http.StatusAccepted, code)
		code, _ = deliver(t, h, "pull_request", "d-2", payload(t, "unlabeled.payload.json",
			append(fork, edit{"label.name", "preview"}, edit{"pull_request.labels", labels()})...))
		assert.Equal(t, http.StatusAccepted, code)
		assert.Equal(t, [2]int{1, 1}, pair(ft.calls()))
	})
	t.Run("case of the full name does not make a fork", func(t *testing.T) {
		ft := &fakeTemporal{}
		h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
		code, _ := deliver(t, h, "pull_request", "d-1", payload(t, "opened.payload.json",
			edit{"pull_request.head.repo.full_name", "codertocat/hello-world"}))
		assert.Equal(t, http.StatusAccepted, code)
		assert.False(t, ft.starts[0].Event.(workflows.PullRequestEvent).Fork)
	})
	t.Run("empty label: forks never get a preview", func(t *testing.T) {
		ft := &fakeTemporal{}
		h := prHandler(t, ft, intake.PreviewPolicy{Label: ""})
		code, out := deliver(t, h, "pull_request", "d-1", payload(t, "opened.payload.json",
			append(fork, edit{"pull_request.labels", labels("preview")})...))
		assert.Equal(t, http.StatusOK, code)
		assert.Contains(t, out["reason"], "fork previews are disabled")
		assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
	})
}

func TestDraftPolicy(t *testing.T) {
	draft := edit{"pull_request.draft", true}
	ft := &fakeTemporal{}
	h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
	for _, file := range []string{"opened.payload.json", "synchronize.payload.json"} {
		code, out := deliver(t, h, "pull_request", "d-"+file, payload(t, file, draft))
		assert.Equal(t, http.StatusOK, code)
		assert.Contains(t, out["reason"], "draft pull request")
	}
	assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
	code, _ := deliver(t, h, "pull_request", "d-ready", payload(t, "ready_for_review.payload.json"))
	assert.Equal(t, http.StatusAccepted, code)
	assert.Equal(t, [2]int{1, 0}, pair(ft.calls()))

	ft = &fakeTemporal{}
	h = prHandler(t, ft, intake.PreviewPolicy{Label: "preview", Drafts: true})
	code, _ = deliver(t, h, "pull_request", "d-1", payload(t, "opened.payload.json", draft))
	assert.Equal(t, http.StatusAccepted, code)
	require.Len(t, ft.starts, 1)
	assert.True(t, ft.starts[0].Event.(workflows.PullRequestEvent).Draft)
}

func TestRepoAllowList(t *testing.T) {
	ft := &fakeTemporal{}
	h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview", Repos: []string{"octo/other"}})
	code, out := deliver(t, h, "pull_request", "d-1", payload(t, "opened.payload.json"))
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, out["reason"], "Codertocat/Hello-World is not in the preview allow-list")
	assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))

	h = prHandler(t, ft, intake.PreviewPolicy{Label: "preview", Repos: []string{"octo/other", " codertocat/HELLO-world "}})
	code, _ = deliver(t, h, "pull_request", "d-1", payload(t, "opened.payload.json"))
	assert.Equal(t, http.StatusAccepted, code)
	assert.Equal(t, [2]int{1, 0}, pair(ft.calls()))
}

func TestPolicyValidation(t *testing.T) {
	for _, tc := range []struct {
		p    intake.PreviewPolicy
		want string
	}{
		{intake.PreviewPolicy{RequireLabel: true}, "PREVIEW_FORK_LABEL is empty"},
		{intake.PreviewPolicy{Label: "preview", Repos: []string{"justrepo"}}, `PREVIEW_REPOS: "justrepo" is not owner/repo`},
		{intake.PreviewPolicy{Label: "preview", Repos: []string{"a/b/c"}}, "PREVIEW_REPOS"},
	} {
		_, err := intake.NewPullRequests(intake.PullRequestOptions{Temporal: &fakeTemporal{}, Policy: tc.p})
		assert.ErrorContains(t, err, tc.want)
	}
	_, err := intake.NewPullRequests(intake.PullRequestOptions{Temporal: &fakeTemporal{}, Policy: intake.PreviewPolicy{Repos: []string{"a/b", ""}}})
	assert.NoError(t, err)
}

func TestDuplicateDeliveryChangesNothing(t *testing.T) {
	ft := &fakeTemporal{}
	h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
	body := payload(t, "opened.payload.json")
	code, _ := deliver(t, h, "pull_request", "d-dup", body)
	assert.Equal(t, http.StatusAccepted, code)
	code, out := deliver(t, h, "pull_request", "d-dup", body)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "duplicate delivery", out["reason"])
	assert.Equal(t, wantID, out["workflow_id"])
	assert.Equal(t, [2]int{1, 0}, pair(ft.calls()))

	// A teardown too.
	closed := payload(t, "closed.payload.json")
	deliver(t, h, "pull_request", "d-close", closed)
	code, out = deliver(t, h, "pull_request", "d-close", closed)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "duplicate delivery", out["reason"])
	assert.Equal(t, [2]int{1, 1}, pair(ft.calls()))

	// Without a delivery ID nothing can be deduplicated: the workflow sees both.
	deliver(t, h, "pull_request", "", body)
	deliver(t, h, "pull_request", "", body)
	assert.Equal(t, [2]int{3, 1}, pair(ft.calls()))
	assert.Empty(t, ft.starts[2].Event.(workflows.PullRequestEvent).DeliveryID)
}

func TestSkippedDeliveryIsJudgedAgainOnRedelivery(t *testing.T) {
	// Only accepted deliveries are remembered: a skipped one (here: draft)
	// is judged afresh, so e.g. redelivering after a policy change works.
	ft := &fakeTemporal{}
	h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
	body := payload(t, "opened.payload.json", edit{"pull_request.draft", true})
	for range 2 {
		code, out := deliver(t, h, "pull_request", "d-draft", body)
		assert.Equal(t, http.StatusOK, code)
		assert.Contains(t, out["reason"], "draft")
	}
}

func TestInvalidPayloadStartsNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		e    []edit
		want string
	}{
		{"no repository owner", "opened.payload.json", []edit{{"repository.owner", nil}}, "missing repository.owner.login"},
		{"no repository name", "opened.payload.json", []edit{{"repository.name", nil}}, "missing repository.name"},
		{"zero number", "opened.payload.json", []edit{{"number", 0}, {"pull_request.number", 0}}, "missing number"},
		{"negative number", "synchronize.payload.json", []edit{{"number", -3}}, "missing number"},
		{"no head sha", "opened.payload.json", []edit{{"pull_request.head.sha", nil}}, "missing pull_request.head.sha"},
		{"bad head sha", "synchronize.payload.json", []edit{{"pull_request.head.sha", "HEAD; rm -rf /"}}, "head.sha is not a commit SHA"},
		{"no head ref", "opened.payload.json", []edit{{"pull_request.head.ref", ""}}, "missing pull_request.head.ref"},
		{"no clone URL", "opened.payload.json", []edit{{"pull_request.head.repo.clone_url", nil}}, "missing pull_request.head.repo.clone_url"},
		{"no head repo", "reopened.payload.json", []edit{{"pull_request.head.repo", nil}}, "missing pull_request.head.repo.clone_url"},
		{"ext transport", "opened.payload.json", []edit{{"pull_request.head.repo.clone_url", "ext::sh -c touch% /tmp/pwned"}}, "clone_url is not an http(s) URL"},
		{"credentials in clone URL", "opened.payload.json", []edit{{"pull_request.head.repo.clone_url", "https://x:tok@github.com/a/b.git"}}, "clone_url"},
		{"odd owner", "opened.payload.json", []edit{{"repository.owner.login", "a b"}}, "owner.login is not a GitHub name"},
		{"no pull_request", "opened.payload.json", []edit{{"pull_request", nil}}, "missing"},
		{"no identity on close", "closed.payload.json", []edit{{"repository", nil}}, "missing repository.owner.login, repository.name"},
		{"wrong type", "opened.payload.json", []edit{{"number", "two"}}, "malformed pull_request payload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ft := &fakeTemporal{}
			h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview", Drafts: true})
			code, out := deliver(t, h, "pull_request", "d-bad", payload(t, tc.file, tc.e...))
			assert.Equal(t, http.StatusBadRequest, code)
			assert.Contains(t, out["reason"], tc.want)
			assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
		})
	}
}

func TestTemporalErrorAnswers503AndRedeliveryWorks(t *testing.T) {
	for _, tc := range []struct {
		file string
		set  func(*fakeTemporal, error)
	}{
		{"opened.payload.json", func(f *fakeTemporal, err error) { f.startErr = err }},
		{"closed.payload.json", func(f *fakeTemporal, err error) { f.signalErr = err }},
	} {
		t.Run(tc.file, func(t *testing.T) {
			ft := &fakeTemporal{}
			h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
			body := payload(t, tc.file)
			tc.set(ft, serviceerror.NewUnavailable("connection refused"))
			code, out := deliver(t, h, "pull_request", "d-503", body)
			assert.Equal(t, http.StatusServiceUnavailable, code)
			assert.NotContains(t, out["reason"], "refused")

			tc.set(ft, errors.New("context deadline exceeded"))
			code, _ = deliver(t, h, "pull_request", "d-503", body)
			assert.Equal(t, http.StatusServiceUnavailable, code)

			tc.set(ft, nil) // Temporal is back; GitHub redelivers.
			code, out = deliver(t, h, "pull_request", "d-503", body)
			assert.Equal(t, http.StatusAccepted, code, out)
			assert.Equal(t, wantID, out["workflow_id"])
			code, out = deliver(t, h, "pull_request", "d-503", body)
			assert.Equal(t, http.StatusOK, code)
			assert.Equal(t, "duplicate delivery", out["reason"])
			starts, signals := ft.calls()
			assert.Equal(t, 1, starts+signals)
		})
	}
}

func TestBranchNameIsPlainData(t *testing.T) {
	const evil = "x$(touch /tmp/pwned)`id`;|&"
	const title = "'; DROP TABLE previews; -- $(reboot)"
	ft := &fakeTemporal{}
	h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
	code, _ := deliver(t, h, "pull_request", "d-1", payload(t, "opened.payload.json",
		edit{"pull_request.head.ref", evil}, edit{"pull_request.title", title}))
	assert.Equal(t, http.StatusAccepted, code)
	require.Len(t, ft.starts, 1)
	ev := ft.starts[0].Event.(workflows.PullRequestEvent)
	assert.Equal(t, evil, ev.HeadRef, "passed through byte for byte")
	assert.Equal(t, title, ev.Title)
	assert.Equal(t, wantID, ft.starts[0].ID, "the workflow ID never contains the branch")
	_, err := os.Stat("/tmp/pwned")
	assert.True(t, os.IsNotExist(err))
}

func TestOtherActionsAndEvents(t *testing.T) {
	ft := &fakeTemporal{}
	h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
	for _, file := range []string{"assigned.payload.json", "converted_to_draft.payload.json", "locked.payload.json", "review_requested.payload.json"} {
		code, out := deliver(t, h, "pull_request", "d-"+file, payload(t, file))
		assert.Equal(t, http.StatusOK, code, file)
		assert.Contains(t, out["reason"], "does not affect previews", file)
	}
	code, out := deliver(t, h, "ping", "d-ping", testenv.Fixture(t, "ping/payload.json"))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "pong", out["reason"])
	code, out = deliver(t, h, "ping", "d-ping", testenv.Fixture(t, "ping/payload.json"))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "pong", out["reason"], "a ping is not remembered")
	code, out = deliver(t, h, "workflow_job", "d-job", testenv.Fixture(t, "workflow_job/queued.payload.json"))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, `event "workflow_job" action "queued" is not handled by Drydock`, out["reason"])
	assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
}

func pair(a, b int) [2]int { return [2]int{a, b} }

func TestLocalCloneURLsOnlyWhenAllowed(t *testing.T) {
	local := payload(t, "opened.payload.json", edit{"pull_request.head.repo.clone_url", "/srv/repos/hello.git"})
	ft := &fakeTemporal{}
	code, out := deliver(t, prHandler(t, ft, intake.PreviewPolicy{Label: "preview"}), "pull_request", "local-1", local)
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, out["reason"], "clone_url")
	starts, _ := ft.calls()
	assert.Zero(t, starts)

	code, _ = deliver(t, prHandler(t, ft, intake.PreviewPolicy{Label: "preview", LocalCloneURLs: true}), "pull_request", "local-2", local)
	assert.Equal(t, http.StatusAccepted, code)
	for _, bad := range []string{"ext::sh -c touch% /tmp/pwned", "relative/path", "file:///etc"} {
		body := payload(t, "opened.payload.json", edit{"pull_request.head.repo.clone_url", bad})
		code, _ = deliver(t, prHandler(t, ft, intake.PreviewPolicy{Label: "preview", LocalCloneURLs: true}), "pull_request", "local-"+bad, body)
		assert.Equal(t, http.StatusBadRequest, code, bad)
	}
}
