package ghfixture

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-github/v62/github"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPullRequestEveryAction(t *testing.T) {
	for _, action := range PullRequestActions {
		b, err := PullRequest(action, PR{Owner: "acme", Repo: "shop", Org: "acme", Number: 7, HeadSHA: "abc123", HeadRef: "feature/x",
			CloneURL: "/tmp/shop.git", HeadOwner: "fork", HeadRepo: "shop", Labels: []string{"preview"}, Label: "preview", InstallationID: 5})
		require.NoError(t, err, action)
		var ev github.PullRequestEvent
		require.NoError(t, json.Unmarshal(b, &ev), action)
		assert.Equal(t, action, ev.GetAction())
		assert.Equal(t, 7, ev.GetNumber())
		assert.Equal(t, "acme/shop", ev.GetRepo().GetFullName())
		assert.Equal(t, "Organization", ev.GetRepo().GetOwner().GetType())
		assert.Equal(t, "acme", ev.GetOrganization().GetLogin())
		assert.EqualValues(t, 5, ev.GetInstallation().GetID())
		assert.Equal(t, "fork", ev.GetSender().GetLogin())
		pr := ev.GetPullRequest()
		assert.Equal(t, 7, pr.GetNumber())
		assert.Equal(t, "https://github.com/acme/shop/pull/7", pr.GetHTMLURL())
		assert.Equal(t, "abc123", pr.GetHead().GetSHA())
		assert.Equal(t, "feature/x", pr.GetHead().GetRef())
		assert.Equal(t, "fork/shop", pr.GetHead().GetRepo().GetFullName())
		assert.True(t, pr.GetHead().GetRepo().GetFork())
		assert.Equal(t, "/tmp/shop.git", pr.GetHead().GetRepo().GetCloneURL())
		assert.Equal(t, "acme/shop", pr.GetBase().GetRepo().GetFullName())
		assert.Equal(t, "main", pr.GetBase().GetRef())
		assert.Equal(t, "preview", pr.Labels[0].GetName())
		want := "open"
		if action == "closed" {
			want = "closed"
		}
		assert.Equal(t, want, pr.GetState(), action)
	}
}

func TestPullRequestActionDetails(t *testing.T) {
	pr := PR{Owner: "alice", Repo: "dots", Number: 3, HeadSHA: "0123456789abcdef0123456789abcdef01234567", HeadRef: "tidy", Title: "Tidy"}
	decode := func(action string, pr PR) (github.PullRequestEvent, map[string]any) {
		t.Helper()
		b, err := PullRequest(action, pr)
		require.NoError(t, err, action)
		var ev github.PullRequestEvent
		require.NoError(t, json.Unmarshal(b, &ev))
		var raw map[string]any
		require.NoError(t, json.Unmarshal(b, &raw))
		return ev, raw
	}

	ev, raw := decode("opened", pr)
	assert.Equal(t, "https://github.com/alice/dots.git", ev.GetPullRequest().GetHead().GetRepo().GetCloneURL(), "default clone URL")
	assert.Equal(t, "User", ev.GetRepo().GetOwner().GetType())
	assert.Nil(t, ev.Organization)
	assert.Nil(t, ev.Installation)
	assert.False(t, ev.GetPullRequest().GetHead().GetRepo().GetFork())
	p := raw["pull_request"].(map[string]any)
	for _, k := range []string{"body", "closed_at", "merged_at", "merge_commit_sha", "assignee", "milestone", "auto_merge"} {
		v, ok := p[k]
		assert.True(t, ok, "GitHub sends %s", k)
		assert.Nil(t, v, "GitHub sends null for %s of an open pull request", k)
	}

	ev, _ = decode("synchronize", pr)
	assert.Equal(t, pr.HeadSHA, ev.GetAfter())
	assert.Len(t, ev.GetBefore(), 40)
	assert.NotEqual(t, ev.GetBefore(), ev.GetAfter())

	pr.Merged = true
	ev, _ = decode("closed", pr)
	assert.True(t, ev.GetPullRequest().GetMerged())
	assert.False(t, ev.GetPullRequest().GetClosedAt().IsZero())
	pr.Merged = false

	ev, _ = decode("labeled", PR{Owner: "a", Repo: "b", Number: 1, Labels: []string{"bug", "preview"}})
	assert.Equal(t, "preview", ev.GetLabel().GetName(), "labeled defaults to the last label")
	ev, _ = decode("unlabeled", PR{Owner: "a", Repo: "b", Number: 1, Label: "preview"})
	assert.Equal(t, "preview", ev.GetLabel().GetName())
	_, err := PullRequest("unlabeled", PR{Owner: "a", Repo: "b", Number: 1})
	assert.ErrorContains(t, err, "needs PR.Label")

	ev, _ = decode("edited", pr)
	assert.Equal(t, "Tidy (draft)", ev.GetChanges().GetTitle().GetFrom())

	ev, _ = decode("assigned", pr)
	assert.Equal(t, "alice", ev.GetAssignee().GetLogin())
	ev, _ = decode("review_requested", pr)
	assert.NotEmpty(t, ev.GetRequestedReviewer().GetLogin())

	_, err = PullRequest("merged", pr)
	assert.ErrorContains(t, err, `no pull_request payload for action "merged"`)
	_, err = PullRequest("opened", PR{Owner: "a", Repo: "b"})
	assert.ErrorContains(t, err, "positive Number")
}

func TestWorkflowJobEveryAction(t *testing.T) {
	queuedAt := time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		action, runner, conclusion, wantConclusion string
		steps                                      int
	}{
		{"queued", "", "", "", 0},
		{"waiting", "", "", "", 0},
		{"in_progress", "drydock-ci-42-1", "", "", 2},
		{"completed", "drydock-ci-42-1", "", "success", 4},
		{"completed", "drydock-ci-42-1", "failure", "failure", 4},
		{"completed", "", "cancelled", "cancelled", 4},
	} {
		b, err := WorkflowJob(tc.action, Job{ID: 42, RunID: 7, Name: "build", Owner: "acme", Repo: "shop", Org: "acme",
			Labels: []string{"self-hosted", "linux"}, RunnerName: tc.runner, Conclusion: tc.conclusion, InstallationID: 99, CreatedAt: queuedAt})
		require.NoError(t, err, tc.action)
		var ev github.WorkflowJobEvent
		require.NoError(t, json.Unmarshal(b, &ev), tc.action)
		wj := ev.GetWorkflowJob()
		assert.Equal(t, tc.action, ev.GetAction())
		assert.Equal(t, tc.action, wj.GetStatus())
		assert.EqualValues(t, 42, wj.GetID())
		assert.EqualValues(t, 7, wj.GetRunID())
		assert.Equal(t, "build", wj.GetName())
		assert.Equal(t, "CI", wj.GetWorkflowName())
		assert.Equal(t, []string{"self-hosted", "linux"}, wj.Labels)
		assert.Equal(t, tc.runner, wj.GetRunnerName())
		assert.Equal(t, tc.wantConclusion, wj.GetConclusion())
		assert.Equal(t, queuedAt, wj.GetCreatedAt().Time)
		assert.Len(t, wj.Steps, tc.steps)
		assert.Equal(t, "acme/shop", ev.GetRepo().GetFullName())
		assert.Equal(t, "acme", ev.GetRepo().GetOwner().GetLogin())
		assert.Equal(t, "Organization", ev.GetRepo().GetOwner().GetType())
		assert.Equal(t, "acme", ev.GetOrg().GetLogin())
		assert.EqualValues(t, 99, ev.GetInstallation().GetID())
		assert.Contains(t, wj.GetHTMLURL(), "github.com/acme/shop/actions/runs/7/job/42")
		if tc.runner != "" {
			assert.EqualValues(t, 1, wj.GetRunnerGroupID())
			assert.Equal(t, "Default", wj.GetRunnerGroupName())
		}
	}
}

// A user's repository: no organization, no installation; a queued job
// names no runner, and GitHub says so with nulls.
func TestWorkflowJobUserRepositoryQueued(t *testing.T) {
	b, err := WorkflowJob("queued", Job{ID: 1, RunID: 2, Name: "x", Owner: "alice", Repo: "dots", Labels: []string{"self-hosted"}})
	require.NoError(t, err)
	var ev github.WorkflowJobEvent
	require.NoError(t, json.Unmarshal(b, &ev))
	assert.Nil(t, ev.Org)
	assert.Nil(t, ev.Installation)
	assert.Equal(t, "User", ev.GetRepo().GetOwner().GetType())
	assert.Nil(t, ev.GetWorkflowJob().RunnerName)
	assert.WithinDuration(t, time.Now(), ev.GetWorkflowJob().GetCreatedAt().Time, time.Minute)
	var raw struct {
		WorkflowJob map[string]any `json:"workflow_job"`
	}
	require.NoError(t, json.Unmarshal(b, &raw))
	for _, k := range []string{"runner_id", "runner_name", "runner_group_id", "runner_group_name", "conclusion", "completed_at"} {
		v, ok := raw.WorkflowJob[k]
		assert.True(t, ok, "GitHub sends %s", k)
		assert.Nil(t, v, k)
	}
}

func TestWorkflowJobUnknownAction(t *testing.T) {
	_, err := WorkflowJob("requested", Job{Owner: "a", Repo: "b"})
	assert.ErrorContains(t, err, `no workflow_job payload for action "requested"`)
}

func TestPingAndInstallation(t *testing.T) {
	var ping github.PingEvent
	require.NoError(t, json.Unmarshal(Ping("acme", "shop", 12), &ping))
	assert.NotEmpty(t, ping.GetZen())
	assert.EqualValues(t, 12, ping.GetHookID())
	assert.Equal(t, "json", ping.GetHook().GetConfig().GetContentType())

	for _, action := range InstallationActions {
		b, err := Installation(action, 77, "acme", "shop", "api")
		require.NoError(t, err, action)
		var ev github.InstallationEvent
		require.NoError(t, json.Unmarshal(b, &ev), action)
		assert.Equal(t, action, ev.GetAction())
		assert.EqualValues(t, 77, ev.GetInstallation().GetID())
		assert.Equal(t, "acme", ev.GetInstallation().GetAccount().GetLogin())
		require.Len(t, ev.Repositories, 2)
		assert.Equal(t, "acme/api", ev.Repositories[1].GetFullName())
		assert.Equal(t, action == "suspend", ev.GetInstallation().SuspendedAt != nil, action)
	}
	_, err := Installation("renamed", 1, "acme")
	assert.ErrorContains(t, err, `no installation payload for action "renamed"`)
}

func TestStableIdentities(t *testing.T) {
	a, err := PullRequest("opened", PR{Owner: "acme", Repo: "shop", Number: 1, HeadSHA: "x", HeadRef: "y"})
	require.NoError(t, err)
	b, err := WorkflowJob("queued", Job{ID: 1, Owner: "acme", Repo: "shop"})
	require.NoError(t, err)
	var pe github.PullRequestEvent
	var we github.WorkflowJobEvent
	require.NoError(t, json.Unmarshal(a, &pe))
	require.NoError(t, json.Unmarshal(b, &we))
	assert.Equal(t, pe.GetRepo().GetID(), we.GetRepo().GetID(), "the same repository has the same ID in every delivery")
	assert.Positive(t, pe.GetRepo().GetID())
}
