package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/drydock-dev/drydock/internal/gh"
)

// forkEvent is a delivery for a pull request from a fork, which the
// "preview" label admits.
func forkEvent(action, sha, delivery string) PullRequestEvent {
	ev := prEvent(action, sha, delivery)
	ev.Fork = true
	ev.ApprovalLabel = "preview"
	ev.Labels = []string{"preview"}
	return ev
}

func (w *world) setGitHub(head string, labels ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.prHead, w.prLabels = head, labels
}

func checkouts(w *world) []string {
	var out []string
	for _, n := range w.names() {
		if len(n) > 8 && n[:8] == "checkout" {
			out = append(out, n)
		}
	}
	return out
}

// The label approves the head it was added at: that commit deploys once
// GitHub confirms it is still the head, open and labelled.
func TestForkApprovedHeadDeploys(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	w.setGitHub("sha1", "Preview")
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, forkEvent("labeled", "sha1", "d1")) }, 0)
	closeWhenSha1Ready(t, env, time.Minute, "d2")
	runSha1Only(t, env, w)
}

// A push from the fork after the approval is not deployed: the workflow
// takes the label off, says why on the PR, and tears the preview down; a
// maintainer approves the new head by adding the label again.
func TestForkPushAfterApprovalIsNotDeployed(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	w.setGitHub("sha1", "bug", "Preview")
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, forkEvent("labeled", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		require.Equal(t, PreviewReady, status(t, env).Phase)
		w.setGitHub("sha2", "bug", "Preview") // the fork pushes
		env.SignalWorkflow(SignalPullRequest, forkEvent("synchronize", "sha2", "d2"))
	}, time.Minute)
	start(env)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"checkout sha1"}, checkouts(w), "sha2 never reached the machine")
	assert.Equal(t, []string{"Preview"}, w.removedLabels, "the label is removed, as GitHub spells it")
	assert.Equal(t, 1, w.deletes, "the preview is torn down")
	last := w.reportLog[len(w.reportLog)-1].Report
	assert.Equal(t, gh.StateDestroyed, last.State)
	assert.Contains(t, last.Note, `new commits from a fork; a maintainer re-adds the "Preview" label to approve sha2`)
}

// A push that lands while the approved head is deploying is caught by the
// check before the next deploy, even when its synchronize delivery is
// late: GitHub's head is what counts.
func TestForkHeadMovedOnGitHubIsNotDeployed(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	w.setGitHub("sha2", "preview") // pushed before the deploy asked
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, forkEvent("labeled", "sha1", "d1")) }, 0)
	start(env)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	assert.Zero(t, w.creates, "no machine")
	assert.Equal(t, []string{"preview"}, w.removedLabels)
	require.NotEmpty(t, w.reportLog, "the PR is told why")
	assert.Contains(t, w.reportLog[len(w.reportLog)-1].Report.Note, "approve sha2")
}

// A replayed old labeled delivery (a new delivery ID, after the preview was
// torn down and the label removed) starts a fresh run: GitHub's answer
// refuses it, no machine is created and nothing is said.
func TestForkReplayedLabeledDeliveryCreatesNothing(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	w.setGitHub("sha2") // the label was removed when sha2 was pushed
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, forkEvent("labeled", "sha1", "replayed-1")) }, 0)
	start(env)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	assert.Zero(t, w.creates)
	assert.Empty(t, w.names())
	assert.Empty(t, w.reports, "nothing is said")
}

// A replayed synchronize delivery has no approval at all: with the label
// gone it creates nothing; with the label still there (say the PR was
// reopened) the label is taken off and the PR told to approve the head.
func TestForkSynchronizeWithoutApprovalCreatesNothing(t *testing.T) {
	t.Run("label gone", func(t *testing.T) {
		env, w := newTestEnv(t, defaultSettings)
		w.setGitHub("sha2")
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, forkEvent("synchronize", "sha2", "replayed-2")) }, 0)
		start(env)
		require.NoError(t, env.GetWorkflowError())
		assert.Zero(t, w.creates)
		assert.Empty(t, w.reports)
	})
	t.Run("label still there", func(t *testing.T) {
		env, w := newTestEnv(t, defaultSettings)
		w.setGitHub("sha2", "preview")
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, forkEvent("reopened", "sha2", "d1")) }, 0)
		start(env)
		require.NoError(t, env.GetWorkflowError())
		assert.Zero(t, w.creates)
		assert.Equal(t, []string{"preview"}, w.removedLabels)
		require.NotEmpty(t, w.reportLog)
		assert.Contains(t, w.reportLog[len(w.reportLog)-1].Report.Note, `re-adds the "preview" label to approve sha2`)
	})
}

// Every deploy asks GitHub, not only the first: a redeploy after the label
// was removed (its unlabeled delivery lost) tears the preview down.
func TestApprovalCheckedBeforeEveryDeploy(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	w.setGitHub("sha1", "preview")
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, forkEvent("labeled", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		require.Equal(t, PreviewReady, status(t, env).Phase)
		w.setGitHub("sha1")
		env.SignalWorkflow(SignalRedeploy, nil)
	}, time.Minute)
	start(env)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"checkout sha1"}, checkouts(w), "no second deploy")
	assert.Equal(t, 1, w.deletes)
	assert.Contains(t, w.reportLog[len(w.reportLog)-1].Report.Note, `the "preview" label is not on the pull request`)
}

// In opt-in mode (PREVIEW_REQUIRE_LABEL) a same-repository pull request is
// checked for the label and state, but its pushes need no new approval.
func TestRequireLabelSameRepoPushesDeploy(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	w.setGitHub("sha1", "preview")
	ev := func(action, sha, d string) PullRequestEvent {
		e := forkEvent(action, sha, d)
		e.Fork = false
		return e
	}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, ev("labeled", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		w.setGitHub("sha2", "preview")
		env.SignalWorkflow(SignalPullRequest, ev("synchronize", "sha2", "d2"))
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, "sha2", status(t, env).DeployedSHA)
		env.SignalWorkflow(SignalPullRequest, ev("closed", "sha2", "d3"))
	}, 2*time.Minute)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"checkout sha1", "checkout sha2"}, checkouts(w))
	assert.Empty(t, w.removedLabels)
}

// A replayed old labeled delivery (a new delivery ID, an older head) that
// reaches an approved, ready preview is stale: GitHub's head is still the
// approved one. The label stays, the preview keeps serving the approved
// head, nothing is torn down, and the approval still holds for a redeploy.
func TestForkStaleLabeledDeliveryKeepsApproval(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	w.setGitHub("sha1", "preview")
	approveSha1ThenDeliver(t, env, forkEvent("labeled", "sha0", "replayed-0"))
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewReady, st.Phase)
		assert.Equal(t, "sha1", st.DeployedSHA)
		assert.Equal(t, "sha1", st.HeadSHA)
		assert.Empty(t, w.removedLabels, "the maintainer's label stays")
		assert.Zero(t, w.deletes, "no teardown")
		env.SignalWorkflow(SignalRedeploy, nil) // sha1 is still the approved head
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		assert.Equal(t, PreviewReady, status(t, env).Phase)
		env.SignalWorkflow(SignalPullRequest, forkEvent("closed", "sha1", "d9"))
	}, 3*time.Minute)
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"checkout sha1", "checkout sha1"}, checkouts(w), "sha0 never reached the machine")
	assert.Empty(t, w.removedLabels)
	last := w.reportLog[len(w.reportLog)-1].Report
	assert.Equal(t, "torn down: pull request closed", last.Note)
}

// A synchronize delivery with an older head (GitHub delivered it late, or
// it was redelivered) is ignored: the approved preview keeps serving.
func TestForkStaleSynchronizeIsIgnored(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	w.setGitHub("sha1", "preview")
	approveSha1ThenDeliver(t, env, forkEvent("synchronize", "sha0", "d0"))
	closeWhenSha1Ready(t, env, 2*time.Minute, "d9")
	runSha1Only(t, env, w)
	assert.Equal(t, 1, w.deletes, "only the close tears down")
	assert.Equal(t, []string{"success", "inactive"}, w.statuses, "the stale delivery deploys nothing")
}

// A stale labeled delivery arriving before the approved head's first
// deploy does not displace the approval: the head GitHub confirms deploys.
func TestForkStaleLabeledBeforeFirstDeploy(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	w.setGitHub("sha1", "preview")
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalPullRequest, forkEvent("labeled", "sha1", "d1"))
		env.SignalWorkflow(SignalPullRequest, forkEvent("labeled", "sha0", "replayed-0"))
	}, 0)
	closeWhenSha1Ready(t, env, time.Minute, "d9")
	runSha1Only(t, env, w)
}

// A genuine push from the fork still revokes the approval after a stale
// delivery was ignored: GitHub's head is a new commit nobody approved.
func TestForkGenuinePushRevokesAfterStaleDelivery(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	w.setGitHub("sha1", "preview")
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, forkEvent("labeled", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalPullRequest, forkEvent("labeled", "sha0", "replayed-0"))
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		require.Equal(t, PreviewReady, status(t, env).Phase, "the stale delivery changed nothing")
		require.Empty(t, w.removedLabels)
		w.setGitHub("sha2", "preview") // the fork pushes
		env.SignalWorkflow(SignalPullRequest, forkEvent("synchronize", "sha2", "d2"))
	}, 2*time.Minute)
	start(env)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"checkout sha1"}, checkouts(w), "sha2 never reached the machine")
	assert.Equal(t, []string{"preview"}, w.removedLabels)
	assert.Equal(t, 1, w.deletes)
	last := w.reportLog[len(w.reportLog)-1].Report
	assert.Equal(t, gh.StateDestroyed, last.State)
	assert.Contains(t, last.Note, `new commits from a fork; a maintainer re-adds the "preview" label to approve sha2`)
}

// A fork's synchronize delivered late, after GitHub's head moved on to a
// newer push: the newer head is what is checked, and it is not approved.
func TestForkStaleSynchronizeAfterNewerPushRevokes(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	w.setGitHub("sha1", "preview")
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, forkEvent("labeled", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		w.setGitHub("sha3", "preview") // two pushes; sha2's delivery arrives first
		env.SignalWorkflow(SignalPullRequest, forkEvent("synchronize", "sha2", "d2"))
	}, time.Minute)
	start(env)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"checkout sha1"}, checkouts(w))
	assert.Equal(t, []string{"preview"}, w.removedLabels)
	assert.Contains(t, w.reportLog[len(w.reportLog)-1].Report.Note, "new commits from a fork; a maintainer re-adds the \"preview\" label to approve sha3")
}

// An event queued before the approval check existed carries no label: once
// a newer delivery of the same head names the label, redeploys of that head
// are checked with GitHub too.
func TestForkEventFromBeforeTheCheckAdoptsTheLabel(t *testing.T) {
	env, w := newTestEnv(t, defaultSettings)
	w.setGitHub("sha1", "preview")
	old := forkEvent("opened", "sha1", "d1")
	old.ApprovalLabel = "" // queued by an older webhook
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, old) }, 0)
	env.RegisterDelayedCallback(func() {
		require.Equal(t, PreviewReady, status(t, env).Phase)
		env.SignalWorkflow(SignalPullRequest, forkEvent("labeled", "sha1", "d2"))
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		w.setGitHub("sha1") // the label was removed; its unlabeled delivery was lost
		env.SignalWorkflow(SignalRedeploy, nil)
	}, 2*time.Minute)
	start(env)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"checkout sha1"}, checkouts(w), "the redeploy was checked, and refused")
	assert.Equal(t, 1, w.deletes)
	assert.Contains(t, w.reportLog[len(w.reportLog)-1].Report.Note, `the "preview" label is not on the pull request`)
}

// closeWhenSha1Ready checks, at time at, that sha1 is deployed and ready,
// then closes the pull request (delivery).
func closeWhenSha1Ready(t *testing.T, env *testsuite.TestWorkflowEnvironment, at time.Duration, delivery string) {
	env.RegisterDelayedCallback(func() {
		st := status(t, env)
		assert.Equal(t, PreviewReady, st.Phase)
		assert.Equal(t, "sha1", st.DeployedSHA)
		env.SignalWorkflow(SignalPullRequest, forkEvent("closed", "sha1", delivery))
	}, at)
}

// runSha1Only runs the preview to its end: only sha1 was checked out, and
// the label stayed.
func runSha1Only(t *testing.T, env *testsuite.TestWorkflowEnvironment, w *world) {
	t.Helper()
	start(env)
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, []string{"checkout sha1"}, checkouts(w))
	assert.Empty(t, w.removedLabels)
}

// approveSha1ThenDeliver: the label approves sha1 at once; a minute later,
// with sha1 ready, ev arrives.
func approveSha1ThenDeliver(t *testing.T, env *testsuite.TestWorkflowEnvironment, ev PullRequestEvent) {
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPullRequest, forkEvent("labeled", "sha1", "d1")) }, 0)
	env.RegisterDelayedCallback(func() {
		require.Equal(t, PreviewReady, status(t, env).Phase)
		env.SignalWorkflow(SignalPullRequest, ev)
	}, time.Minute)
}
