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

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
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
	h, err := intake.New(intake.Options{Secret: secret, Allowed: intake.AllowEveryone(), Router: intake.Dedupe(mux, intake.NewRecentDeliveries(100))})
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

// edit is a change to a delivery: a dotted path and its new value (nil
// deletes the key).
type edit struct {
	path  string
	value any
}

// examplePR is the pull request the tests' deliveries describe: a user's
// repository, its own branch (no fork), labelled "bug", delivered to a
// GitHub App installation.
func examplePR() ghfixture.PR {
	return ghfixture.PR{
		Owner: "Acme", Repo: "Store-Front", Number: 2,
		HeadSHA: exampleSHA, HeadRef: "saved-cards", BaseRef: "main", Title: "Checkout: pay with saved cards",
		Sender: "alice", Labels: []string{"bug"}, Label: "bug", InstallationID: 1,
	}
}

const exampleSHA = "5d41402abc4b2a76b9719d911017c592d3c4e2a1"

// payload builds the pull_request delivery for name (an action, or
// "opened.org": the repository belongs to an organization) about examplePR,
// then applies edits.
func payload(t *testing.T, name string, edits ...edit) []byte {
	t.Helper()
	pr := examplePR()
	action, variant, _ := strings.Cut(name, ".")
	if variant == "org" {
		pr.Org = pr.Owner
	}
	raw, err := ghfixture.PullRequest(action, pr)
	require.NoError(t, err)
	return applyEdits(t, raw, edits...)
}

// applyEdits changes a delivery: each edit is a dotted path and its new
// value (nil deletes the key).
func applyEdits(t *testing.T, raw []byte, edits ...edit) []byte {
	t.Helper()
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
			require.True(t, ok, "payload has no object at %s", e.path)
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
	{"pull_request.head.repo.full_name", "mallory/Store-Front"},
	{"pull_request.head.repo.clone_url", "https://github.com/mallory/Store-Front.git"},
	{"pull_request.head.label", "mallory:saved-cards"},
}

const wantID = "preview:acme/store-front:2"

func TestOpenedSignalsWithStart(t *testing.T) {
	tc := &fakeTemporal{}
	h := prHandler(t, tc, intake.PreviewPolicy{Label: "preview"})
	code, out := deliver(t, h, "pull_request", "d-open", payload(t, "opened"))
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
	assert.Equal(t, []any{workflows.PreviewInput{Owner: "Acme", Repo: "Store-Front", Number: 2}}, s.Args)
	repo, ok := s.Opts.TypedSearchAttributes.GetKeyword(workflows.SearchAttrRepo)
	assert.True(t, ok)
	assert.Equal(t, "acme/store-front", repo)
	n, ok := s.Opts.TypedSearchAttributes.GetInt64(workflows.SearchAttrPRNumber)
	assert.True(t, ok)
	assert.EqualValues(t, 2, n)
	assert.Equal(t, 2, s.Opts.TypedSearchAttributes.Size())

	assert.Equal(t, workflows.PullRequestEvent{
		DeliveryID:     "d-open",
		Action:         "opened",
		Owner:          "Acme",
		Repo:           "Store-Front",
		Number:         2,
		Title:          "Checkout: pay with saved cards",
		HTMLURL:        "https://github.com/Acme/Store-Front/pull/2",
		HeadSHA:        exampleSHA,
		HeadRef:        "saved-cards",
		BaseRef:        "main",
		CloneURL:       "https://github.com/Acme/Store-Front.git",
		Fork:           false,
		Draft:          false,
		Merged:         false,
		Labels:         []string{"bug"},
		Sender:         "alice",
		InstallationID: 1,
	}, s.Event, "the workflow gets a typed event, not the raw payload")
}

func TestDeployActionsSignalWithStart(t *testing.T) {
	for _, tc := range []struct{ file, action string }{
		{"synchronize", "synchronize"},
		{"reopened", "reopened"},
		{"ready_for_review", "ready_for_review"},
		{"opened.org", "opened"},
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
	code, _ := deliver(t, h, "pull_request", "d-sync", payload(t, "synchronize", edit{"pull_request.head.sha", newSHA}))
	assert.Equal(t, http.StatusAccepted, code)
	require.Len(t, ft.starts, 1)
	assert.Equal(t, wantID, ft.starts[0].ID)
	assert.Equal(t, newSHA, ft.starts[0].Event.(workflows.PullRequestEvent).HeadSHA)
}

func TestClosedOnlySignals(t *testing.T) {
	ft := &fakeTemporal{}
	h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
	code, out := deliver(t, h, "pull_request", "d-close", payload(t, "closed", edit{"pull_request.merged", true}))
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
		code, out := deliver(t, h, "pull_request", "d-close", payload(t, "closed"))
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
	code, out := deliver(t, h, "pull_request", "d-close", payload(t, "closed", edit{"pull_request.head.repo", nil}))
	assert.Equal(t, http.StatusAccepted, code, out)
	require.Len(t, ft.signals, 1)
	assert.True(t, ft.signals[0].Event.(workflows.PullRequestEvent).Fork)
}

func TestDuplicateDeliveryChangesNothing(t *testing.T) {
	ft := &fakeTemporal{}
	h := prHandler(t, ft, intake.PreviewPolicy{Label: "preview"})
	body := payload(t, "opened")
	code, _ := deliver(t, h, "pull_request", "d-dup", body)
	assert.Equal(t, http.StatusAccepted, code)
	code, out := deliver(t, h, "pull_request", "d-dup", body)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "duplicate delivery", out["reason"])
	assert.Equal(t, wantID, out["workflow_id"])
	assert.Equal(t, [2]int{1, 0}, pair(ft.calls()))

	// A teardown too.
	closed := payload(t, "closed")
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
	body := payload(t, "opened", edit{"pull_request.draft", true})
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
		{"no repository owner", "opened", []edit{{"repository.owner", nil}}, "missing repository.owner.login"},
		{"no repository name", "opened", []edit{{"repository.name", nil}}, "missing repository.name"},
		{"zero number", "opened", []edit{{"number", 0}, {"pull_request.number", 0}}, "missing number"},
		{"negative number", "synchronize", []edit{{"number", -3}}, "missing number"},
		{"no head sha", "opened", []edit{{"pull_request.head.sha", nil}}, "missing pull_request.head.sha"},
		{"bad head sha", "synchronize", []edit{{"pull_request.head.sha", "HEAD; rm -rf /"}}, "head.sha is not a commit SHA"},
		{"no head ref", "opened", []edit{{"pull_request.head.ref", ""}}, "missing pull_request.head.ref"},
		{"no clone URL", "opened", []edit{{"pull_request.head.repo.clone_url", nil}}, "missing pull_request.head.repo.clone_url"},
		{"no head repo", "reopened", []edit{{"pull_request.head.repo", nil}}, "missing pull_request.head.repo.clone_url"},
		{"ext transport", "opened", []edit{{"pull_request.head.repo.clone_url", "ext::sh -c touch% /tmp/pwned"}}, "clone_url is not an http(s) URL"},
		{"credentials in clone URL", "opened", []edit{{"pull_request.head.repo.clone_url", "https://x:tok@github.com/a/b.git"}}, "clone_url"},
		{"odd owner", "opened", []edit{{"repository.owner.login", "a b"}}, "owner.login is not a GitHub name"},
		{"no pull_request", "opened", []edit{{"pull_request", nil}}, "missing"},
		{"no identity on close", "closed", []edit{{"repository", nil}}, "missing repository.owner.login, repository.name"},
		{"wrong type", "opened", []edit{{"number", "two"}}, "malformed pull_request payload"},
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
		{"opened", func(f *fakeTemporal, err error) { f.startErr = err }},
		{"closed", func(f *fakeTemporal, err error) { f.signalErr = err }},
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
	code, _ := deliver(t, h, "pull_request", "d-1", payload(t, "opened",
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
	for _, file := range []string{"assigned", "converted_to_draft", "locked", "review_requested", "edited"} {
		code, out := deliver(t, h, "pull_request", "d-"+file, payload(t, file))
		assert.Equal(t, http.StatusOK, code, file)
		assert.Contains(t, out["reason"], "does not affect previews", file)
	}
	code, out := deliver(t, h, "ping", "d-ping", ghfixture.Ping("Acme", "Store-Front", 1))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "pong", out["reason"])
	code, out = deliver(t, h, "ping", "d-ping", ghfixture.Ping("Acme", "Store-Front", 1))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "pong", out["reason"], "a ping is not remembered")
	code, out = deliver(t, h, "workflow_job", "d-job", jobPayload(t, "queued"))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, `event "workflow_job" action "queued" is not handled by Drydock`, out["reason"])
	assert.Equal(t, [2]int{0, 0}, pair(ft.calls()))
}

func pair(a, b int) [2]int { return [2]int{a, b} }

func TestLocalCloneURLsOnlyWhenAllowed(t *testing.T) {
	local := payload(t, "opened", edit{"pull_request.head.repo.clone_url", "/srv/repos/hello.git"})
	ft := &fakeTemporal{}
	code, out := deliver(t, prHandler(t, ft, intake.PreviewPolicy{Label: "preview"}), "pull_request", "local-1", local)
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, out["reason"], "clone_url")
	starts, _ := ft.calls()
	assert.Zero(t, starts)

	code, _ = deliver(t, prHandler(t, ft, intake.PreviewPolicy{Label: "preview", LocalCloneURLs: true}), "pull_request", "local-2", local)
	assert.Equal(t, http.StatusAccepted, code)
	for _, bad := range []string{"ext::sh -c touch% /tmp/pwned", "relative/path", "file:///etc"} {
		body := payload(t, "opened", edit{"pull_request.head.repo.clone_url", bad})
		code, _ = deliver(t, prHandler(t, ft, intake.PreviewPolicy{Label: "preview", LocalCloneURLs: true}), "pull_request", "local-"+bad, body)
		assert.Equal(t, http.StatusBadRequest, code, bad)
	}
}
