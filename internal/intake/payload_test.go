package intake_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-github/v62/github"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/ghfixture"
	"github.com/drydock-dev/drydock/internal/intake"
	"github.com/drydock-dev/drydock/workflows"
	"github.com/drydock-dev/drydock/workflows/runnerapi"
)

// The intake decodes only the fields it reads; what the workflows receive
// must be what they received when every payload went through go-github's
// structs (goGitHubPreviewEvent and goGitHubJobEvent are that code, kept
// here as the reference), for GitHub's shapes and the odd ones.
func TestPayloadDecodingMatchesGoGitHub(t *testing.T) {
	prEdits := map[string][]edit{
		"plain":             nil,
		"fork":              fork,
		"deleted head repo": {{"pull_request.head.repo", nil}},
		"null head repo":    {{"pull_request.head.repo", json.RawMessage("null")}},
		"no pull_request":   {{"pull_request", nil}},
		"no base repo":      {{"pull_request.base.repo", nil}},
		"no repository":     {{"repository", nil}},
		"no installation":   {{"installation", nil}},
		"number only in pr": {{"number", nil}},
		"null labels":       {{"pull_request.labels", []any{nil, map[string]any{"name": ""}, map[string]any{"name": "preview"}}}},
		"bot author":        {{"pull_request.user", map[string]any{"login": "renovate[bot]", "type": "Bot"}}},
		"draft":             {{"pull_request.draft", true}},
		"null label":        {{"label", nil}},
	}
	for _, action := range ghfixture.PullRequestActions {
		for _, variant := range []string{"", ".org"} {
			for name, edits := range prEdits {
				body := payload(t, action+variant, edits...)
				var pe github.PullRequestEvent
				require.NoError(t, json.Unmarshal(body, &pe))
				got, err := intake.DecodePullRequest(body, "d-1")
				require.NoError(t, err)
				assert.Equal(t, goGitHubPreviewEvent(&pe, "d-1"), got, "%s%s %s", action, variant, name)
			}
		}
	}
	jobEdits := map[string][]edit{
		"plain":            nil,
		"no workflow_job":  {{"workflow_job", nil}},
		"no organization":  {{"organization", nil}},
		"no repository":    {{"repository", nil}},
		"unix timestamps":  {{"workflow_job.created_at", 1764489600}, {"workflow_job.started_at", 1764489600123}},
		"null timestamps":  {{"workflow_job.created_at", json.RawMessage("null")}, {"workflow_job.started_at", nil}},
		"offset timestamp": {{"workflow_job.created_at", "2026-11-30T09:00:00+01:00"}},
		"blank labels":     {{"workflow_job.labels", []any{" linux ", "", nil, "x64"}}},
		"user's repo":      {{"repository.owner.type", "User"}},
	}
	for _, action := range ghfixture.WorkflowJobActions {
		for _, variant := range []string{"", ".k8s"} {
			for name, edits := range jobEdits {
				body := jobPayload(t, action+variant, edits...)
				var we github.WorkflowJobEvent
				require.NoError(t, json.Unmarshal(body, &we))
				got, err := intake.DecodeWorkflowJob(body, "d-2")
				require.NoError(t, err)
				assert.Equal(t, goGitHubJobEvent(&we, "d-2"), got, "%s%s %s", action, variant, name)
			}
		}
	}
}

// A field of the wrong type is answered as before the intake decoded only
// what it reads: in the action, owner or installation, by the handler
// ("malformed JSON", malformed_json); in a field the router reads, by the
// router; in an event Drydock only acknowledges, not at all.
func TestWrongTypesAreAnsweredWhereTheyWere(t *testing.T) {
	tc := &fakeTemporal{}
	h := prHandler(t, tc, intake.PreviewPolicy{Label: "preview"})
	cases := []struct {
		name, event string
		body        []byte
		code        int
		reason      string
	}{
		{"action", "pull_request", payload(t, "opened", edit{"action", 3}), 400, "malformed JSON: json: cannot unmarshal number into Go struct field"},
		{"owner login", "pull_request", payload(t, "opened", edit{"repository.owner.login", []any{}}), 400, "malformed JSON: "},
		{"installation", "pull_request", payload(t, "opened", edit{"installation", "x"}), 400, "malformed JSON: "},
		// "number" comes before "repository" in the body: the head's error
		// still wins, as when the handler decoded the head first.
		{"number then owner", "pull_request", payload(t, "opened", edit{"number", "two"}, edit{"repository.owner", 5}), 400, "malformed JSON: "},
		{"number", "pull_request", payload(t, "opened", edit{"number", "two"}), 400, "malformed pull_request payload: json: cannot unmarshal string into Go struct field"},
		{"head sha", "pull_request", payload(t, "opened", edit{"pull_request.head.sha", 5}), 400, "malformed pull_request payload: "},
		{"unread field", "pull_request", payload(t, "opened", edit{"pull_request.user.id", "x"}), 202, "preview requested (opened)"},
		{"other event", "issues", payload(t, "opened", edit{"number", "two"}, edit{"pull_request", "x"}), 200, `event "issues" action "opened" is not handled by Drydock`},
		{"not JSON", "pull_request", []byte(`{"action":`), 400, "malformed JSON: unexpected end of JSON input"},
	}
	for i, c := range cases {
		code, out := deliver(t, h, c.event, "d-types-"+c.name, c.body)
		assert.Equal(t, c.code, code, "%d %s: %v", i, c.name, out)
		assert.True(t, strings.HasPrefix(out["reason"], c.reason), "%s: %q", c.name, out["reason"])
	}
	starts, signals := tc.calls()
	assert.Equal(t, [2]int{1, 0}, [2]int{starts, signals}, "only the delivery with an unread field of the wrong type starts a preview")

	jh := jobHandler(t, &fakeJobs{})
	code, out := deliver(t, jh, "workflow_job", "d-types-job", jobPayload(t, "queued", edit{"workflow_job.run_id", "x"}))
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, out["reason"], "malformed workflow_job payload: ")
	code, out = deliver(t, jh, "workflow_job", "d-types-time", jobPayload(t, "queued", edit{"workflow_job.created_at", "yesterday"}))
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, out["reason"], `malformed workflow_job payload: parsing time "\"yesterday\""`)
}

// goGitHubPreviewEvent is how the intake read a pull_request delivery
// through go-github (the reference for the decoding it does today).
func goGitHubPreviewEvent(pe *github.PullRequestEvent, deliveryID string) workflows.PullRequestEvent {
	pr := pe.GetPullRequest()
	out := workflows.PullRequestEvent{
		DeliveryID: deliveryID, Action: pe.GetAction(), Owner: pe.GetRepo().GetOwner().GetLogin(), Repo: pe.GetRepo().GetName(),
		Number: pe.GetNumber(), Title: pr.GetTitle(), HTMLURL: pr.GetHTMLURL(), HeadSHA: pr.GetHead().GetSHA(), HeadRef: pr.GetHead().GetRef(),
		BaseRef: pr.GetBase().GetRef(), CloneURL: pr.GetHead().GetRepo().GetCloneURL(), Draft: pr.GetDraft(), Merged: pr.GetMerged(),
		Sender: pe.GetSender().GetLogin(), InstallationID: pe.GetInstallation().GetID(),
	}
	if out.Number == 0 {
		out.Number = pr.GetNumber()
	}
	base := pr.GetBase().GetRepo().GetFullName()
	if base == "" {
		base = pe.GetRepo().GetFullName()
	}
	head := pr.GetHead().GetRepo().GetFullName()
	out.Fork = head == "" || !strings.EqualFold(head, base)
	if pr != nil {
		for _, l := range pr.Labels {
			if n := l.GetName(); n != "" {
				out.Labels = append(out.Labels, n)
			}
		}
	}
	return out
}

// goGitHubJobEvent is how the intake read a workflow_job delivery through
// go-github.
func goGitHubJobEvent(we *github.WorkflowJobEvent, deliveryID string) runnerapi.WorkflowJobEvent {
	wj := we.GetWorkflowJob()
	out := runnerapi.WorkflowJobEvent{
		DeliveryID: deliveryID, Action: we.GetAction(), JobID: wj.GetID(), RunID: wj.GetRunID(), Name: wj.GetName(),
		WorkflowName: wj.GetWorkflowName(), Owner: we.GetRepo().GetOwner().GetLogin(), Repo: we.GetRepo().GetName(),
		Org: we.GetOrg().GetLogin(), RunnerName: wj.GetRunnerName(), Conclusion: wj.GetConclusion(),
		CreatedAt: wj.GetCreatedAt().Time, StartedAt: wj.GetStartedAt().Time, InstallationID: we.GetInstallation().GetID(),
	}
	if out.Org == "" && we.GetRepo().GetOwner().GetType() == "Organization" {
		out.Org = out.Owner
	}
	if wj != nil {
		for _, l := range wj.Labels {
			if l = strings.TrimSpace(l); l != "" {
				out.Labels = append(out.Labels, l)
			}
		}
	}
	return out
}
