package ghfixture

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-github/v62/github"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drydock-dev/drydock/internal/testenv"
)

func TestRewritesEveryActionFixture(t *testing.T) {
	dir := testenv.SharedDir(t) + "/fixtures/github-webhooks"
	for _, action := range []string{"opened", "synchronize", "closed", "reopened", "labeled", "unlabeled", "ready_for_review"} {
		b, err := PullRequest(dir, action, PR{Owner: "acme", Repo: "shop", Number: 7, HeadSHA: "abc123", HeadRef: "feature/x",
			CloneURL: "/tmp/shop.git", HeadOwner: "fork", HeadRepo: "shop", Labels: []string{"preview"}})
		require.NoError(t, err, action)
		var ev github.PullRequestEvent
		require.NoError(t, json.Unmarshal(b, &ev), action)
		assert.Equal(t, action, ev.GetAction())
		assert.Equal(t, 7, ev.GetNumber())
		assert.Equal(t, "acme/shop", ev.GetRepo().GetFullName())
		assert.Equal(t, "abc123", ev.GetPullRequest().GetHead().GetSHA())
		assert.Equal(t, "feature/x", ev.GetPullRequest().GetHead().GetRef())
		assert.Equal(t, "fork/shop", ev.GetPullRequest().GetHead().GetRepo().GetFullName())
		assert.Equal(t, "/tmp/shop.git", ev.GetPullRequest().GetHead().GetRepo().GetCloneURL())
		assert.Equal(t, "acme/shop", ev.GetPullRequest().GetBase().GetRepo().GetFullName())
		assert.Equal(t, "preview", ev.GetPullRequest().Labels[0].GetName())
	}
}

func TestRewritesWorkflowJobFixtures(t *testing.T) {
	dir := testenv.SharedDir(t) + "/fixtures/github-webhooks"
	queuedAt := time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		action, runner, conclusion, wantConclusion string
	}{
		{"queued", "", "", ""},
		{"waiting", "", "", ""},
		{"in_progress", "drydock-ci-42-1", "", ""},
		{"completed", "drydock-ci-42-1", "", "success"},
		{"completed", "drydock-ci-42-1", "failure", "failure"},
	} {
		b, err := WorkflowJob(dir, tc.action, Job{ID: 42, RunID: 7, Name: "build", Owner: "acme", Repo: "shop", Org: "acme",
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
		assert.Equal(t, []string{"self-hosted", "linux"}, wj.Labels)
		assert.Equal(t, tc.runner, wj.GetRunnerName())
		assert.Equal(t, tc.wantConclusion, wj.GetConclusion())
		assert.Equal(t, queuedAt, wj.GetCreatedAt().Time)
		assert.Equal(t, "acme/shop", ev.GetRepo().GetFullName())
		assert.Equal(t, "acme", ev.GetRepo().GetOwner().GetLogin())
		assert.Equal(t, "Organization", ev.GetRepo().GetOwner().GetType())
		assert.Equal(t, "acme", ev.GetOrg().GetLogin())
		assert.EqualValues(t, 99, ev.GetInstallation().GetID())
		assert.Contains(t, wj.GetHTMLURL(), "github.com/acme/shop/actions/runs/7/job/42")
	}

	// A user's repository: no organization, no installation.
	b, err := WorkflowJob(dir, "completed", Job{ID: 1, RunID: 2, Name: "x", Owner: "alice", Repo: "dots", Labels: []string{"self-hosted"}})
	require.NoError(t, err)
	var ev github.WorkflowJobEvent
	require.NoError(t, json.Unmarshal(b, &ev))
	assert.Nil(t, ev.Org)
	assert.Nil(t, ev.Installation)
	assert.Equal(t, "User", ev.GetRepo().GetOwner().GetType())
	assert.Nil(t, ev.GetWorkflowJob().RunnerName)
	assert.WithinDuration(t, time.Now(), ev.GetWorkflowJob().GetCreatedAt().Time, time.Minute)

	_, err = WorkflowJob(dir, "requested", Job{})
	assert.ErrorContains(t, err, `no workflow_job fixture for action "requested"`)
}
